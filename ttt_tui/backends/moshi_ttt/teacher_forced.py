"""Teacher-forced Moshi-TTT: the recording's own Mimi codes are Moshi's audio stream (nothing is sampled, so two
runs are identical), fed in chunks of whole TTT mini-batches (no pad rows ever enter an update), with the outer
loss per position: the cross-entropy of the model's audio logits against the recording's next codes.

The input layout is their LibriLight evaluation's (``finetune/paper_metrics.py::_evaluate_librilight_streaming``
in AlufRon/claude-web, ``moshi_ttt_try/moshi-finetune/``, lines 1333-1334): 17 codebooks, the text stream and the
user's audio all token 0, the recording in codebooks 1-8; the outer loss per position is their
``_compute_position_loss`` (lines 1377-1410): cross-entropy over the 8 audio codebooks, averaged over those whose
target is not ``zero_token_id`` and lies in ``[0, card)``.

Where ttt-tui departs from that function (docs/moshi-ttt.md, "Teacher-forced evaluation"): it calls
``LMModel.forward`` once per chunk, and ``forward`` delays the codebooks and prepends the start token *inside each
call*, so every chunk's first step saw the start token instead of the previous frame, and the last position of
every chunk (whose delayed codebooks have NaN logits) scored 0.0. Here the acoustic delays run over the whole
stream: the chunked run equals one ``LMModel.forward`` over the whole recording (tested), which is what the
model was trained on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class TeacherForcedStream:
    """Steps ``lm`` (a moshi ``LMModel`` whose main transformer is streaming) through chunks of Mimi codes.

    Moshi's acoustic delays (``lm.delays``, one per codebook: 0 for text and the semantic codebook, 1 for the
    other audio codebooks in Moshi 7B) mean that the logits produced at step ``s`` for codebook ``k`` predict the
    code of frame ``s - delay[k]`` (moshi's ``_delay_sequence`` / ``_undelay_sequence``). So position ``t``'s
    outer loss is complete once step ``t + max delay`` has run: each chunk of C steps completes C positions,
    ``max delay`` positions behind (the first chunk fewer).
    """

    def __init__(self, lm):
        self.lm = lm
        self.n_audio = int(lm.dep_q)
        self.K = int(lm.num_codebooks)  # 17 for Moshi: text, Moshi's 8 audio codebooks, the user's 8
        self.card = int(lm.card)
        dev = lm.device
        self.delays = torch.tensor(list(lm.delays), dtype=torch.long, device=dev)
        self.audio_delays = [int(d) for d in list(lm.delays)[1 : 1 + self.n_audio]]  # host ints: no device sync
        self.D = max(self.audio_delays)
        self.initial = lm._get_initial_token()[0, :, 0]  # [K]: the start token moshi puts before step 0
        self.reset()

    def reset(self) -> None:
        """A new stream: step 0, no history (the main transformer's streaming state is reset by the caller)."""
        self.step = 0  # steps run so far
        self._prev: torch.Tensor | None = None  # the last max(delays) + 1 frames of the 17-codebook stream
        self._carry: tuple[torch.Tensor, torch.Tensor] | None = None  # partial sums of the positions not complete

    def _streams(self, audio: torch.Tensor) -> torch.Tensor:
        """The 17-codebook frames [K, C] of Mimi's codes [n_audio, C]: text and the user's audio token 0 (theirs)."""
        frames = audio.new_zeros(self.K, audio.shape[-1])
        frames[1 : 1 + self.n_audio] = audio
        return frames

    def chunk(self, audio: torch.Tensor) -> torch.Tensor:
        """Run the C steps of ``audio`` [n_audio, C] (Mimi's codes of C frames); returns the outer loss of the
        positions this chunk completed (float32 on the device, NaN where no codebook could be scored)."""
        lm, C, D = self.lm, audio.shape[-1], self.D
        a = self.step
        frames = self._streams(audio.to(self.delays.device).long())
        ext = frames if self._prev is None else torch.cat([self._prev, frames], 1)  # frames [a - len(prev), a + C)
        f0 = a - (ext.shape[1] - C)
        # The delayed stream at steps a-1 .. a+C-1: codebook k of step s is the code of frame s - delay[k], or the
        # start token before frame 0 (moshi's _delay_sequence over the whole stream, then [initial] + delayed).
        steps = torch.arange(a - 1, a + C, device=ext.device)
        src = steps[None, :] - self.delays[:, None]  # [K, C+1]
        have = src >= 0
        delayed = torch.where(have, ext.gather(1, (src - f0).clamp(min=0)), self.initial[:, None])
        model_in = delayed[None, :, :C]  # step s's input is the delayed stream at s-1 (LMModel.forward)
        targets = delayed[1 : 1 + self.n_audio, 1:]  # what step s predicts: the delayed stream at s
        scored = have[1 : 1 + self.n_audio, 1:] & (targets != lm.zero_token_id) & (targets >= 0) & (targets < self.card)
        transformer_out, _ = lm.forward_text(model_in)
        logits = lm.forward_depformer_training(delayed[None, :, 1:], transformer_out)[0]  # [n_audio, C, card]
        ce = F.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), targets.clamp(0, self.card - 1).reshape(-1), reduction="none"
        ).view(self.n_audio, C)
        ce = torch.where(scored, ce, torch.zeros_like(ce))
        # Step s of codebook k scores position s - delay[k]: sum into positions [a - D, a + C).
        sums = ce.new_zeros(C + D)
        counts = ce.new_zeros(C + D)
        for k in range(self.n_audio):
            o = D - self.audio_delays[k]
            sums[o : o + C] += ce[k]
            counts[o : o + C] += scored[k].float()
        if self._carry is not None:
            sums[:D] += self._carry[0]
            counts[:D] += self._carry[1]
        self._carry = (sums[C:], counts[C:])
        done = sums[:C] / counts[:C]  # positions a - D .. a + C - D - 1; NaN where nothing was scored
        self._prev = ext[:, -(D + 1) :]
        self.step = a + C
        return done[max(0, D - a) :]  # positions before 0 do not exist
