"""The run's record: the run log (``runlog``: ``run.sqlite``, block by block), its header and end record
(``schema``), the in-memory store readers draw from (``store``), and the report folder (``files``). Readers
import this and the analysis; neither imports torch."""
