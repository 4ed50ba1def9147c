"""``EarlyExitSpeech2Text``: ESPnet's ``Speech2Text`` decoding from the exits of an early-exit model.

Three ways to decode, all with ESPnet's own beam search (CTC prefix scorer, attention decoder,
LM, ...) scoring with the chosen exit's own CTC head and decoder:

* a fixed exit (``exit_layer``): the encoder runs only up to it (ESPnet's ``__call__``);
* an exit policy (``exit_policy``, :mod:`espnet_eexit.exit_policy`): the encoder runs exit by exit
  and each utterance stops where the policy says; batches shrink as utterances stop
  (:meth:`EarlyExitSpeech2Text.decode_batch`);
* every exit in one pass (:meth:`EarlyExitSpeech2Text.decode_all_exits`), with every confidence
  measure recorded per exit, for scoring each exit and sweeping policy thresholds offline.

A model without CTC heads (early-exit Whisper) gives its policies and confidences through its
decoders: each exit passed is decoded (:meth:`EarlyExitSpeech2Text.decode_exit`), and the decoding
of the exit where an utterance stops is its result.

A model whose CTC heads have their own small vocabulary (``model_conf.exit_ctc_vocabulary``,
e.g. characters on early-exit Whisper) gives its policies the heads' posteriors: no decoder runs
to decide, and the decoder of the exit where an utterance stops gives the transcript (decode with
``ctc_weight`` 0: the heads cannot score the decoder's tokens).

With ``ctc_greedy=True`` each of them takes the best path of the exit's CTC head instead (frame
argmax, repeats merged, blanks dropped): ESPnet's CTC prefix scorer with beam 1 spends most of the
decoding time of a small CPU model in Python steps, one per output token, while the best path
costs one argmax; on a trained model the two rarely differ.
"""
import logging
from typing import Dict, List, NamedTuple, Optional, Tuple

import torch
from espnet2.bin.asr_inference import Speech2Text
from espnet.nets.beam_search import Hypothesis
from espnet.nets.scorers.ctc import CTCPrefixScorer

from espnet_eexit.errors import EarlyExitConfigError
from espnet_eexit.exit_info import format_exit_info, summarise
from espnet_eexit.exit_policy import CONFIDENCE_POLICIES, AgreementExit, ExitPoint, ExitPolicy, exit_measures
from espnet_eexit.model import DecodedExit, EarlyExitASRModel, ExitDecision
from espnet_eexit.model_files import loading_model_file

# ESPnet's n-best result: (text, tokens, token ids, Hypothesis)
Results = List[tuple]


def empty_results(nbest: int) -> Results:
    """What ESPnet's inference writes for an utterance too short to decode."""
    return [[" ", ["<space>"], [2], Hypothesis(score=0.0, scores={}, states={}, yseq=[])]] * nbest


class ExitConfidences(NamedTuple):
    """Every policy's confidence measure for one utterance at one exit (:data:`CONFIDENCE_POLICIES`)."""

    entropy: float
    max_posterior: float
    nbest_posterior: float
    agreement: float  # consecutive exits ending here with the same hypothesis


assert ExitConfidences._fields == CONFIDENCE_POLICIES


class EarlyExitSpeech2Text(Speech2Text):
    """:class:`Speech2Text` that decodes from a chosen exit, under an exit policy, or from all exits.

    Args:
        exit_layer: decode from the exit after this layer (one of the model's ``exit_layers``);
            ``None`` = the last exit. Ignored when ``exit_policy`` is given.
        exit_policy: choose the exit per utterance (:func:`espnet_eexit.exit_policy.build_exit_policy`).
        confidence_nbest: N of the N-best posterior recorded by :meth:`decode_all_exits`.
        ctc_greedy: decode with the best path of the exit's CTC head instead of ESPnet's beam
            search (needs a CTC-only setup: ``ctc_weight`` 1.0 and no LM; ``beam_size`` unused).
        *args, **kwargs: as for :class:`Speech2Text`.
    """

    def __init__(
        self,
        *args,
        exit_layer: Optional[int] = None,
        exit_policy: Optional[ExitPolicy] = None,
        confidence_nbest: int = 8,
        ctc_greedy: bool = False,
        **kwargs,
    ):
        ctc_weight = kwargs.get("ctc_weight", 0.5)  # Speech2Text's default
        has_lm = bool(kwargs.get("lm_train_config") or kwargs.get("ngram_file"))
        if ctc_greedy and (ctc_weight != 1.0 or has_lm):
            raise EarlyExitConfigError(
                "ctc_greedy decodes with the CTC head alone: it needs ctc_weight 1.0 and no LM "
                f"(got ctc_weight {ctc_weight}{', an LM' if has_lm else ''})"
            )
        with loading_model_file(kwargs.get("asr_train_config"), kwargs.get("asr_model_file")):
            super().__init__(*args, **kwargs)
        self.ctc_greedy = ctc_greedy
        model = self.asr_model
        self.exit_policy = None
        if not isinstance(model, EarlyExitASRModel):
            raise EarlyExitConfigError(
                f"{kwargs.get('asr_train_config')}: decoding from exits needs a model trained with "
                f"model: eexit (this one is {type(model).__name__}); ESPnet's own ASR models decode "
                "with espnet2.bin.asr_inference"
            )
        self.blank_id = model.ctc_blank_id
        if model.exit_ctc_vocabulary is not None and (ctc_weight != 0.0 or ctc_greedy):
            raise EarlyExitConfigError(
                "this model's CTC heads are over model_conf.exit_ctc_vocabulary (for the exit "
                "decision), not its token list: decode with --ctc_weight 0.0 and without "
                f"--ctc_greedy (got ctc_weight {ctc_weight}{', ctc_greedy' if ctc_greedy else ''})")
        encoder = model.encoder
        self.exit_layer = model.exit_layers[-1] if exit_layer is None else exit_layer
        encoder.check_exit_layer(self.exit_layer)
        if exit_policy is not None:
            self.exit_policy = exit_policy.bind(model.exit_layers, encoder.num_layers)
        self.confidence_nbest = confidence_nbest
        model.inference_exit_layer = self.exit_layer
        # The beam search was built for the last exit's heads; point it at the exit in use.
        self._scoring_exit = model.exit_layers[-1]
        self.use_exit(self.exit_layer)
        # Measure (not assume) how many encoder layers each utterance really costs.
        self.layers_computed = 0  # layer calls x batch size, counted by hooks
        self.utterances = 0
        self.exit_counts: Dict[int, int] = {}
        self.policy_decodings = 0  # utterance decodings a policy read (models without CTC heads)
        for layer in encoder.encoders:
            layer.register_forward_hook(self._count_layer)

    def _count_layer(self, module, inputs, output) -> None:
        hidden = inputs[0][0] if isinstance(inputs[0], tuple) else inputs[0]
        self.layers_computed += hidden.size(0)

    # ------------------------------------------------------------------ fixed exit (ESPnet API)
    def __call__(self, speech):
        if self.exit_policy is not None:
            if not torch.is_tensor(speech):
                speech = torch.tensor(speech)
            speech = speech.unsqueeze(0).to(getattr(torch, self.dtype))
            lengths = speech.new_full([1], speech.size(1), dtype=torch.long)
            return self.decode_batch(speech, lengths)[0][1]
        # decode_batch/decode_all_exits may have pointed the scorers at another exit's heads
        self.use_exit(self.exit_layer)
        results = super().__call__(speech)
        self._count_exit(self.exit_layer)
        return results

    def _count_exit(self, layer: int) -> None:
        self.utterances += 1
        self.exit_counts[layer] = self.exit_counts.get(layer, 0) + 1

    # ------------------------------------------------------------------ policies (batched)
    @torch.no_grad()
    def decode_batch(
        self, speech: torch.Tensor, speech_lengths: torch.Tensor
    ) -> List[Tuple[ExitDecision, Results]]:
        """Decode a batch under ``exit_policy``: each utterance from the exit the policy picks.

        Args:
            speech: (B, S) waveforms.
            speech_lengths: (B,)
        Returns:
            Per utterance, the :class:`ExitDecision` and ESPnet's n-best results from that exit.
        """
        if self.exit_policy is None:
            raise EarlyExitConfigError("decode_batch needs an exit policy (exit_policy=...)")
        speech, speech_lengths = speech.to(self.device), speech_lengths.to(self.device)
        decisions = self.asr_model.encode_with_policy(
            speech, speech_lengths, self.exit_policy,
            decode_exit=None if self._has_ctc_heads() else self.decode_exit)
        out = []
        for decision in decisions:
            self._count_exit(decision.layer)
            results = decision.results
            if results is None:
                results = self._decode_from(decision.layer, decision.hidden)
            out.append((decision, results))
        return out

    def _has_ctc_heads(self) -> bool:
        model = self.asr_model
        return model.ctc_for_exit(model.exit_layers[0]) is not None

    def decode_exit(self, layer: int, hidden: torch.Tensor, lengths: torch.Tensor) -> DecodedExit:
        """Decode a batch's (B, T', D) outputs of exit ``layer`` with its decoder, and what the
        policies read of it (a model without CTC heads: :mod:`espnet_eexit.exit_policy`)."""
        model = self.asr_model
        results = [self._decode_from(layer, hidden[b, : int(n)]) for b, n in enumerate(lengths.tolist())]
        if self.exit_policy is not None:
            self.policy_decodings += len(results)
        hypotheses = []
        for nbest in results:
            yseq = [int(t) for t in nbest[0][3].yseq]
            if yseq and yseq[-1] == model.eos:
                yseq = yseq[:-1]
            hypotheses.append(tuple(yseq[1:]))  # without sos
        log_probs, steps = model.decoder_log_posteriors(layer, hidden, lengths, hypotheses)
        steps = steps.numpy().copy()
        steps[lengths.cpu().numpy() == 0] = 0  # no frames: no decoding (an empty result)
        return DecodedExit(
            log_probs=log_probs.cpu().numpy(),
            lengths=steps,
            hypotheses=hypotheses,
            nbest_scores=[[float(r[3].score) for r in nbest] for nbest in results],
            results=results,
        )

    def _decode_from(self, layer: int, hidden: torch.Tensor) -> Results:
        """ESPnet's n-best results for one utterance's (T', D) exit output."""
        if hidden.size(0) == 0:  # as ESPnet's inference does for a too-short utterance
            logging.warning("an utterance has no encoder frames after subsampling: empty result")
            return empty_results(self.nbest)
        self.use_exit(layer)
        return self._decode_single_sample(hidden)

    def _decode_single_sample(self, enc: torch.Tensor) -> Results:
        """ESPnet's n-best results for one utterance's (T', D) encoder output (of the exit in use)."""
        if not self.ctc_greedy:
            return self._beam_search_within_decoder_length(enc)
        model = self.asr_model
        head = model.ctc_for_exit(self._scoring_exit)
        best, labels = head.log_softmax(enc[None])[0].max(dim=-1)  # (T',), (T',)
        labels = torch.unique_consecutive(labels)
        token_int = labels[labels != self.blank_id].tolist()
        token = self.converter.ids2tokens(token_int)
        text = self.tokenizer.tokens2text(token) if self.tokenizer is not None else None
        # the best path's log-probability; yseq framed by sos/eos as ESPnet's beam search does
        score = best.sum()
        hyp = Hypothesis(score=score, scores={"ctc": score}, states={},
                         yseq=torch.tensor([model.sos, *token_int, model.eos]))
        return [(text, token, token_int, hyp)]

    def _beam_search_within_decoder_length(self, enc: torch.Tensor) -> Results:
        """ESPnet's beam search, its output length capped at what the decoder in use can read.

        ESPnet caps a hypothesis at ``maxlenratio`` x encoder frames (all frames for 0); a decoder
        with learned positions (Whisper's: 448) cannot go on past its last one, e.g. when a weak
        exit never emits ``<eos>`` on a long utterance. A negative ``maxlenratio`` is ESPnet's
        absolute maximum length.
        """
        model = self.asr_model
        decoder = model.decoder_for_exit(self._scoring_exit)
        limit = getattr(decoder, "max_output_length", None)
        ratio = self.maxlenratio  # ESPnet's maxlen, as BeamSearch.forward computes it
        maxlen = enc.size(0) if ratio == 0 else (-ratio if ratio < 0 else max(1, int(ratio * enc.size(0))))
        if limit is None or maxlen <= limit:
            return super()._decode_single_sample(enc)
        self.maxlenratio = -float(limit)
        try:
            return super()._decode_single_sample(enc)
        finally:
            self.maxlenratio = ratio

    # ------------------------------------------------------------------ all exits in one pass
    @torch.no_grad()
    def decode_all_exits(
        self, speech: torch.Tensor, speech_lengths: torch.Tensor
    ) -> Dict[int, List[Tuple[ExitConfidences, Results]]]:
        """Decode every exit of a batch from one encoder pass, with every confidence measure.

        Returns:
            ``{layer: [(confidences, n-best results) per utterance]}``.
        """
        model = self.asr_model
        speech, speech_lengths = speech.to(self.device), speech_lengths.to(self.device)
        results: Dict[int, List[Tuple[ExitConfidences, Results]]] = {}
        agreement = AgreementExit(2).bind(model.exit_layers, model.encoder.num_layers)
        for out in model.encode_exits(speech, speech_lengths):
            point, decoded = self._exit_point(out)
            measures = exit_measures(point, self.confidence_nbest, agreement.decide(point)[1])
            per_utt = []
            for b in range(out.hidden.size(0)):
                confidences = ExitConfidences(*(float(measures[name][b]) for name in CONFIDENCE_POLICIES))
                decoding = (decoded.results[b] if decoded is not None
                            else self._decode_from(out.layer, out.hidden[b, : int(out.lengths[b])]))
                per_utt.append((confidences, decoding))
            results[out.layer] = per_utt
        self.utterances += speech.size(0)
        return results

    def _exit_point(self, out) -> Tuple[ExitPoint, Optional[DecodedExit]]:
        """What the policies see at an exit of the whole batch: its CTC posteriors, or (a model
        without CTC heads) its decoder's decoding (then returned too)."""
        model = self.asr_model
        common = dict(layer=out.layer, next_layer=None, num_layers=model.encoder.num_layers,
                      blank_id=self.blank_id)
        head = model.ctc_for_exit(out.layer)
        if head is not None:
            log_probs = head.log_softmax(out.hidden).float().cpu().numpy()  # the policies' maths is numpy
            return ExitPoint(log_probs=log_probs, lengths=out.lengths.cpu().numpy(), **common), None
        decoded = self.decode_exit(out.layer, out.hidden, out.lengths)
        return ExitPoint(log_probs=decoded.log_probs, lengths=decoded.lengths,
                         hypotheses=decoded.hypotheses, nbest_scores=decoded.nbest_scores, **common), decoded

    # ------------------------------------------------------------------ bookkeeping
    def exit_summary(self) -> str:
        """Text for ``<output_dir>/exit_info`` (:mod:`espnet_eexit.exit_info`)."""
        info = summarise(
            self.asr_model.encoder.num_layers,
            self.utterances,
            self.layers_computed,
            exit_layer=self.exit_layer,
            policy=None if self.exit_policy is None else self.exit_policy.describe(),
            exit_counts=self.exit_counts,
            decodings=self.policy_decodings if self.policy_decodings else None,
        )
        return format_exit_info(info)

    def use_exit(self, layer: int) -> None:
        """Point the beam search's scorers (CTC prefix scorer, decoder) at exit ``layer``'s heads."""
        if layer == self._scoring_exit:
            return
        model = self.asr_model
        self._score_with(model.ctc_for_exit(self._scoring_exit), model.ctc_for_exit(layer),
                         model.decoder_for_exit(self._scoring_exit), model.decoder_for_exit(layer))
        self._scoring_exit = layer

    def _score_with(self, old_ctc, new_ctc, old_decoder, new_decoder) -> None:
        search = self.beam_search
        if search is None:
            return
        for table in (search.scorers, search.full_scorers, search.part_scorers, search.nn_dict):
            for name in list(table.keys()):
                scorer = table[name]
                if isinstance(scorer, CTCPrefixScorer) and scorer.ctc is old_ctc:
                    scorer.ctc = new_ctc
                elif scorer is old_ctc and old_ctc is not None:
                    table[name] = new_ctc
                elif scorer is old_decoder and old_decoder is not None:
                    table[name] = new_decoder
