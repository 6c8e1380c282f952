"""Our users' Moshi-TTT checkpoints: ``checkpoint`` reads and validates a folder, ``runtime`` resolves how it
runs and audits it, ``inner_loop`` and ``layer`` compute what their TTT layer computes (recording the losses),
``backend`` streams audio through Mimi and Moshi. Only ``layer`` and ``backend.load`` import the moshi package."""

from .backend import MoshiBackend

__all__ = ["MoshiBackend"]
