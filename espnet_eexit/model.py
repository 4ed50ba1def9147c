"""``model: eexit`` — ESPnet's ASR model trained with the early-exit objective.

Every exit ``k`` of the encoder gets a CTC head (its own, as in the paper, or one shared head) and,
for attention encoder-decoder models, a decoder (its own per exit, as in the paper, or one shared).
The training loss is ``sum_k w_k * loss_k`` with the usual joint loss per exit,
``loss_k = ctc_weight * CTC_k + (1 - ctc_weight) * Att_k``.

Reported statistics (ESPnet logs, ``images/``, tensorboard):

* ``loss``: the combined early-exit objective (what is optimised). ``valid.loss`` follows it.
* ``loss_ctc``, ``cer_ctc``, ``loss_att``, ``acc``, ``cer``, ``wer``: the LAST exit, with ESPnet's
  usual names, so ``valid.acc`` (checkpoint selection and ``valid.acc.ave.pth``) follows the full
  depth model, exactly as for a single-exit ESPnet model.
* ``loss_exit<k>``, ``loss_ctc_exit<k>``, ``cer_ctc_exit<k>``, ``loss_att_exit<k>``, ``acc_exit<k>``,
  ``cer_exit<k>``, ``wer_exit<k>``: the same per exit (``k`` = layer number).
* ``loss_distill_exit<k>`` (with ``distill_weight`` > 0): exit k's self-distillation loss.

CTC heads over a small vocabulary (``exit_ctc_vocabulary``, e.g. ``characters``): the CTC heads
(every exit's) read a second tokenisation of the same text, derived inside the model from the
token ids (:mod:`espnet_eexit.ctc_vocabulary`), e.g. characters on early-exit Whisper, whose own
51,864 tokens make a CTC head cost more than its decoder. The exit policies then read these heads'
posteriors (:meth:`EarlyExitASRModel.encode_with_policy`) and the decoder runs only at the exit
where an utterance stops. ``loss_ctc_exit<k>``/``cer_ctc_exit<k>`` are over those units.

Self-distillation (``distill_weight``): every exit below the last also learns the last exit's
posteriors, ``loss_k += w_k * (ctc_weight * KL_ctc + (1 - ctc_weight) * KL_att)``: KL_ctc =
KL(p_last || p_k) of the CTC heads summed over valid frames, KL_att the same for the decoders' token
distributions (teacher-forced on the reference, as the attention loss is) summed over valid tokens,
each divided by the batch size (the scale of ESPnet's losses). No gradient goes into the last exit
through this term: the lower exits learn to agree with the full depth, which is what lets a policy
stop them early. With a pretrained backbone (Whisper) the teacher is good from the first update.

The heads of the last exit are ESPnet's own ``ctc`` and ``decoder`` attributes (same parameter
names as a single-exit model, so an ESPnet checkpoint initialises the last exit); those of the
other exits live in ``exit_ctcs`` / ``exit_decoders``, keyed by layer number.
"""
import copy
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from espnet2.asr.ctc import CTC
from espnet2.asr.decoder.linear_decoder import LinearDecoder
from espnet2.asr.espnet_model import ESPnetASRModel, autocast, autocast_type
from espnet2.torch_utils.device_funcs import force_gatherable
from espnet.nets.e2e_asr_common import ErrorCalculator
from espnet.nets.pytorch_backend.nets_utils import make_pad_mask, pad_list, th_accuracy
from espnet.nets.pytorch_backend.transformer.add_sos_eos import add_sos_eos

from espnet_eexit.ctc_vocabulary import BLANK, SPACE, ExitCTCVocabulary, resolve_units
from espnet_eexit.encoder.early_exit import EarlyExitEncoderMixin, ExitOutput
from espnet_eexit.errors import EarlyExitConfigError
from espnet_eexit.exit_policy import ExitPoint, ExitPolicy, Stopwatch
from espnet_eexit.signature import merged_signature

EXIT_LOSS_WEIGHT_MODES = ("sum", "mean")


@dataclass
class ExitDecision:
    """Where one utterance left the encoder under an exit policy.

    Attributes:
        layer: the exit's layer; layers above it were not computed for this utterance.
        confidence: the policy's value at that exit (NaN for ``fixed``/``budget``).
        hidden: (T', D) encoder output at that exit (valid frames only).
        results: the exit decoder's n-best results when the policy read them (a model without
            CTC heads, :class:`DecodedExit`), so that they are not decoded twice; else None.
    """

    layer: int
    confidence: float
    hidden: torch.Tensor
    results: Optional[Any] = None


@dataclass
class DecodedExit:
    """One exit's decoding of the running utterances, for policies of a model without CTC heads.

    Attributes:
        log_probs: (B, U+1, V) the exit decoder's log-posteriors along each hypothesis and <eos>.
        lengths: (B,) valid steps (U_b + 1).
        hypotheses: each utterance's best hypothesis (token ids, without sos/eos).
        nbest_scores: each utterance's N-best log-probabilities (one value with greedy decoding).
        results: each utterance's n-best results (ESPnet's ``Speech2Text`` layout).
    """

    log_probs: np.ndarray
    lengths: np.ndarray
    hypotheses: List[Tuple[int, ...]]
    nbest_scores: List[List[float]]
    results: List[Any]


#: decodes the running utterances' (B, T', D) outputs of an exit: (layer, hidden, lengths) -> ...
ExitDecoding = Callable[[int, torch.Tensor, torch.Tensor], DecodedExit]


def resolve_exit_loss_weights(
    exit_loss_weights: Union[str, List[float]], num_exits: int
) -> List[float]:
    """``"sum"`` -> all 1 (the paper), ``"mean"`` -> all 1/N, a list -> checked and returned."""
    if isinstance(exit_loss_weights, str):
        if exit_loss_weights == "sum":
            return [1.0] * num_exits
        if exit_loss_weights == "mean":
            return [1.0 / num_exits] * num_exits
        raise EarlyExitConfigError(
            f"exit_loss_weights={exit_loss_weights!r}: must be one of {EXIT_LOSS_WEIGHT_MODES} "
            f"or a list of {num_exits} non-negative numbers (one per exit)"
        )
    weights = [float(w) for w in exit_loss_weights]
    if len(weights) != num_exits:
        raise EarlyExitConfigError(
            f"exit_loss_weights has {len(weights)} values but the encoder has {num_exits} exits: "
            f"give one non-negative weight per exit"
        )
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise EarlyExitConfigError(
            f"exit_loss_weights={weights}: weights must be >= 0 and not all 0"
        )
    return weights


def resolve_distill_weights(distill_weight: Union[float, List[float]], num_exits: int) -> List[float]:
    """One non-negative weight per exit below the last."""
    lower = num_exits - 1
    weights = [float(distill_weight)] * lower if isinstance(distill_weight, (int, float)) else \
        [float(w) for w in distill_weight]
    if len(weights) != lower or any(w < 0 for w in weights):
        raise EarlyExitConfigError(
            f"distill_weight={distill_weight}: give one number >= 0, or {lower} (one per exit "
            f"below the last)")
    return weights


def distillation_kl(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) per frame (or token), summed over valid ones, divided by the batch size.

    Args:
        student, teacher: (B, T, V) log-posteriors (the teacher's are not differentiated).
        mask: (B, T) bool, the valid frames (tokens).
    """
    teacher = teacher.detach()
    per_frame = (teacher.exp() * (teacher - student)).sum(-1)  # (B, T)
    return per_frame.masked_fill(~mask, 0.0).sum() / student.size(0)


def _fresh_copy(module: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``module`` with newly initialised parameters (an independent head)."""
    clone = copy.deepcopy(module)
    for m in clone.modules():
        if m is not clone and hasattr(m, "reset_parameters"):
            m.reset_parameters()
    return clone


def _ctc_over(ctc: CTC, odim: int) -> CTC:
    """ESPnet's ``CTC`` configured as ``ctc`` (dropout, loss type, reduction) over ``odim`` units:
    Linear(D, odim) + log-softmax, freshly initialised."""
    return CTC(odim=odim, encoder_output_size=ctc.ctc_lo.in_features, dropout_rate=ctc.dropout_rate,
               ctc_type=ctc.ctc_type, reduce=ctc.reduce,
               zero_infinity=bool(getattr(ctc.ctc_loss, "zero_infinity", True)))


class EarlyExitASRModel(ESPnetASRModel):
    """ESPnet's :class:`ESPnetASRModel` with one CTC (and decoder) per encoder exit.

    Args:
        share_ctc_head: one CTC head for every exit (``True``) or one per exit (``False``, paper).
        decoder_per_exit: one attention decoder per exit (``True``, paper's AED) or one shared
            decoder (``False``). Default (``None``): per exit when the model has a decoder. Each
            exit's decoder is freshly initialised, or a copy of a pretrained one (a decoder with
            ``is_pretrained``, e.g. ``eexit_whisper``).
        exit_loss_weights: ``"sum"`` (paper), ``"mean"``, or one weight per exit.
        distill_weight: self-distillation weight of each exit below the last (one number for all,
            or one per exit below the last); 0 = off. Distils the CTC heads, the decoders, or both,
            in the proportions of ``ctc_weight``.
        exit_ctc_vocabulary: the CTC heads' own small vocabulary (module doc): ``"characters"``
            (a-z, apostrophe, word separator), a string of characters or a list of them; every
            exit gets a head Linear(D, units + blank) over it. None (default): the CTC heads are
            over the token list. Needs 0 < ``ctc_weight`` < 1 and an attention decoder (which
            gives the transcript).
        **kwargs: every argument of :class:`ESPnetASRModel` (``ctc_weight``, ``lsm_weight``, ...);
            ``interctc_weight`` must stay 0 (exits replace InterCTC).
    """

    def __init__(
        self,
        vocab_size: int,
        token_list: Union[Tuple[str, ...], List[str]],
        encoder: torch.nn.Module,
        decoder: Optional[torch.nn.Module],
        ctc: torch.nn.Module,
        joint_network: Optional[torch.nn.Module],
        share_ctc_head: bool = False,
        decoder_per_exit: Optional[bool] = None,
        exit_loss_weights: Union[str, List[float]] = "sum",
        distill_weight: Union[float, List[float]] = 0.0,
        exit_ctc_vocabulary: Optional[Union[str, List[str]]] = None,
        **kwargs,
    ):
        if not isinstance(encoder, EarlyExitEncoderMixin):
            raise EarlyExitConfigError(
                f"model: eexit needs an early-exit encoder (eexit_conformer, eexit_transformer, "
                f"eexit_e_branchformer, eexit_hf_wav2vec2); got {type(encoder).__name__}"
            )
        if joint_network is not None or isinstance(decoder, LinearDecoder):
            raise EarlyExitConfigError(
                "model: eexit supports CTC and attention decoders; transducer and linear "
                "decoders are not supported"
            )
        if kwargs.get("interctc_weight", 0.0) != 0.0:
            raise EarlyExitConfigError(
                "interctc_weight must be 0 with model: eexit (every exit already has its own "
                "CTC loss; weight exits with exit_loss_weights)"
            )
        if kwargs.get("lang_token_id", -1) != -1:
            raise EarlyExitConfigError("lang_token_id is not supported by model: eexit")
        ctc_weight = kwargs.get("ctc_weight", 0.5)
        if not 0.0 <= ctc_weight <= 1.0:
            raise EarlyExitConfigError(f"ctc_weight={ctc_weight}: must be in [0, 1]")
        uses_attention = ctc_weight < 1.0
        if uses_attention and decoder is None:
            raise EarlyExitConfigError(
                f"ctc_weight={ctc_weight} < 1 needs an attention decoder (e.g. decoder: "
                "transformer); for a CTC-only model set ctc_weight: 1.0"
            )
        if decoder_per_exit and not uses_attention:
            raise EarlyExitConfigError(
                "decoder_per_exit: true needs an attention decoder, but ctc_weight is 1.0 "
                "(CTC only): set ctc_weight < 1 with a decoder, or drop decoder_per_exit"
            )
        if share_ctc_head and ctc_weight == 0.0:
            raise EarlyExitConfigError(
                "share_ctc_head: true contradicts ctc_weight: 0.0 (no CTC head is trained)"
            )
        if exit_ctc_vocabulary is not None and not (0.0 < ctc_weight < 1.0 and decoder is not None):
            raise EarlyExitConfigError(
                f"exit_ctc_vocabulary={exit_ctc_vocabulary!r} needs 0 < ctc_weight < 1 and an "
                f"attention decoder (the heads decide, the decoder transcribes); got ctc_weight "
                f"{ctc_weight}{'' if decoder is not None else ' and no decoder'}")
        units = None if exit_ctc_vocabulary is None else resolve_units(exit_ctc_vocabulary)
        weights = resolve_exit_loss_weights(exit_loss_weights, encoder.num_exits)
        distill = resolve_distill_weights(distill_weight, encoder.num_exits)

        super().__init__(
            vocab_size=vocab_size,
            token_list=token_list,
            encoder=encoder,
            decoder=decoder,
            ctc=ctc,
            joint_network=None,
            **kwargs,
        )
        self.exit_layers: List[int] = list(encoder.exit_layers)
        self.exit_loss_weights = weights
        self.distill_weights = distill  # per exit below the last
        self.share_ctc_head = share_ctc_head
        self.decoder_per_exit = uses_attention if decoder_per_exit is None else decoder_per_exit
        # Exit at which ESPnet's encode() stops (Speech2Text and friends); None = last exit.
        self.inference_exit_layer: Optional[int] = None
        # The CTC heads' own small vocabulary: ESPnet's head over the token list is replaced by
        # one over the units (the same class and options), and CER is counted over the units.
        self.exit_ctc_vocabulary: Optional[ExitCTCVocabulary] = None
        if units is not None:
            self.exit_ctc_vocabulary = ExitCTCVocabulary(token_list, units)
            self.ctc = _ctc_over(self.ctc, len(self.exit_ctc_vocabulary))
        self.ctc_error_calculator = self.error_calculator
        if units is not None and self.error_calculator is not None:
            self.ctc_error_calculator = ErrorCalculator(
                self.exit_ctc_vocabulary.units, SPACE, BLANK, report_cer=True, report_wer=False)

        intermediate = [str(k) for k in self.exit_layers[:-1]]
        self.exit_ctcs = torch.nn.ModuleDict()
        if self.ctc is not None and not share_ctc_head:
            self.exit_ctcs.update({k: _fresh_copy(self.ctc) for k in intermediate})
        self.exit_decoders = torch.nn.ModuleDict()
        if self.decoder is not None and self.decoder_per_exit:
            # A pretrained decoder (Whisper's) is copied with its weights: each exit starts from
            # what it knows; a decoder built from scratch gets fresh weights per exit (the paper).
            copy_of = copy.deepcopy if getattr(self.decoder, "is_pretrained", False) else _fresh_copy
            self.exit_decoders.update({k: copy_of(self.decoder) for k in intermediate})

    # ------------------------------------------------------------------ heads
    @property
    def ctc_blank_id(self) -> int:
        """Index of the blank in the CTC heads' outputs."""
        vocabulary = self.exit_ctc_vocabulary
        return self.blank_id if vocabulary is None else vocabulary.blank_id

    def ctc_targets(
        self, text: torch.Tensor, text_lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """The CTC heads' targets: (B, L) token ids (-1 padded), (B,) -> the same, or with
        ``exit_ctc_vocabulary`` (B, L') unit ids (-1 padded) and (B,) their lengths."""
        if self.exit_ctc_vocabulary is None:
            return text, text_lengths
        return self.exit_ctc_vocabulary.targets(text, text_lengths)

    def ctc_for_exit(self, layer: int) -> Optional[torch.nn.Module]:
        """The CTC head of the exit after ``layer`` (None for an attention-only model)."""
        self.encoder.check_exit_layer(layer)
        return self.exit_ctcs[str(layer)] if str(layer) in self.exit_ctcs else self.ctc

    def decoder_for_exit(self, layer: int) -> Optional[torch.nn.Module]:
        """The attention decoder of the exit after ``layer`` (None for a CTC-only model)."""
        self.encoder.check_exit_layer(layer)
        return self.exit_decoders[str(layer)] if str(layer) in self.exit_decoders else self.decoder

    # ------------------------------------------------------------------ encoder
    def encoder_input(
        self, speech: torch.Tensor, speech_lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Frontend, SpecAugment (training only), normalisation, pre-encoder.

        Args:
            speech: (B, S) waveforms or (B, T, D) features.
            speech_lengths: (B,)
        Returns:
            (B, T, D_in) encoder input and (B,) lengths.
        """
        # ESPnet's guard: under --use_amp the features are computed in full precision unless
        # model_conf.autocast_frontend is true (ESPnetASRModel.encode does the same)
        with autocast(self.autocast_frontend, dtype=autocast_type):
            feats, lengths = self._extract_feats(speech, speech_lengths)
            if self.specaug is not None and self.training:
                feats, lengths = self.specaug(feats, lengths)
            if self.normalize is not None:
                feats, lengths = self.normalize(feats, lengths)
        if self.preencoder is not None:
            feats, lengths = self.preencoder(feats, lengths)
        return feats, lengths

    def _post_encode(self, out: ExitOutput) -> ExitOutput:
        if self.postencoder is None:
            return out
        hidden, lengths = self.postencoder(out.hidden, out.lengths)
        return ExitOutput(out.layer, hidden, lengths)

    def encode_exits(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        max_exit_layer: Optional[int] = None,
    ) -> List[ExitOutput]:
        """Encoder outputs at every exit up to ``max_exit_layer`` (default: all), shallow first."""
        feats, lengths = self.encoder_input(speech, speech_lengths)
        return [
            self._post_encode(out)
            for out in self.encoder.iter_exits(feats, lengths, max_exit_layer)
        ]

    def encode(
        self, speech: torch.Tensor, speech_lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """ESPnet's interface (used by ``Speech2Text``): the output at ``inference_exit_layer``.

        Only the layers up to that exit are computed.
        """
        feats, lengths = self.encoder_input(speech, speech_lengths)
        hidden, lengths, _ = self.encoder(feats, lengths, max_exit_layer=self.inference_exit_layer)
        out = self._post_encode(ExitOutput(-1, hidden, lengths))
        return out.hidden, out.lengths

    @torch.no_grad()
    def decoder_log_posteriors(
        self, layer: int, hidden: torch.Tensor, lengths: torch.Tensor, hypotheses: Sequence[Sequence[int]]
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Exit ``layer``'s decoder teacher-forced on given hypotheses: its log-posteriors at each
        output token and at <eos>.

        Args:
            hidden: (B, T', D) the exit's encoder output; lengths: (B,)
            hypotheses: B token-id sequences (without sos/eos).
        Returns:
            (B, U+1, V) log-posteriors (step u predicts token u; the last valid step <eos>) and
            (B,) valid steps (fewer past the positions of a decoder with ``max_output_length``).
        """
        decoder = self.decoder_for_exit(layer)
        if decoder is None:
            raise EarlyExitConfigError("this model has no attention decoder")
        # a decoder with learned positions (Whisper's) cannot score past its last one: a hypothesis
        # cut there by the beam search (which then adds <eos> unscored) is scored up to it
        limit = getattr(decoder, "max_output_length", None) or max(len(h) + 1 for h in hypotheses)
        ys_in = pad_list([torch.tensor([self.sos, *h][:limit], dtype=torch.long) for h in hypotheses], self.eos)
        steps = torch.tensor([min(len(h) + 1, limit) for h in hypotheses], dtype=torch.long)
        out, _ = decoder(hidden, lengths, ys_in.to(hidden.device), steps.to(hidden.device))
        return torch.log_softmax(out.float(), dim=-1), steps

    @torch.no_grad()
    def encode_with_policy(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        policy: ExitPolicy,
        decode_exit: Optional[ExitDecoding] = None,
    ) -> List[ExitDecision]:
        """Run the encoder exit by exit; each utterance stops where ``policy`` says.

        Utterances that stop drop out of the batch (:meth:`EncoderState.select`), so the layers
        above an utterance's exit are never computed for them; the batch ends when all have stopped.

        Args:
            speech: (B, S) waveforms (or (B, T, D) features).
            speech_lengths: (B,)
            policy: a bound :class:`ExitPolicy`.
            decode_exit: for a model without CTC heads, decodes an exit's running utterances
                (:class:`DecodedExit`): the policy then reads the decoder (``exit_policy`` doc).
        Returns:
            One :class:`ExitDecision` per utterance, in batch order.
        """
        sync = (lambda: torch.cuda.synchronize(speech.device)) if speech.is_cuda else None
        clock = Stopwatch(sync)
        feats, lengths = self.encoder_input(speech, speech_lengths)
        front_end_s = clock.elapsed()
        encoder = self.encoder
        state = encoder.start(feats, lengths)
        running = torch.arange(feats.size(0))  # batch positions still in the encoder
        decisions: List[Optional[ExitDecision]] = [None] * feats.size(0)
        for i, layer in enumerate(self.exit_layers):
            state = encoder.advance(state, layer)
            out = self._post_encode(encoder.exit_output(state))
            is_last = i == len(self.exit_layers) - 1
            evidence = dict(log_probs=None, lengths=out.lengths.cpu().numpy())
            decoded = None
            if policy.needs_posteriors:
                head = self.ctc_for_exit(layer)
                if head is not None:
                    # the policies' maths is numpy (shared with the ONNX runtime)
                    evidence["log_probs"] = head.log_softmax(out.hidden).float().cpu().numpy()
                elif decode_exit is not None:
                    decoded = decode_exit(layer, out.hidden, out.lengths)
                    evidence = dict(log_probs=decoded.log_probs, lengths=decoded.lengths,
                                    hypotheses=decoded.hypotheses, nbest_scores=decoded.nbest_scores)
                else:
                    raise EarlyExitConfigError(
                        f"exit policy '{policy.name}' reads CTC posteriors, but this model has no "
                        "CTC heads (ctc_weight 0): train it with model_conf.exit_ctc_vocabulary "
                        "(e.g. characters) and ctc_weight > 0, or use --exit_policy fixed or budget"
                    )
            point = ExitPoint(
                layer=layer,
                next_layer=None if is_last else self.exit_layers[i + 1],
                num_layers=encoder.num_layers,
                elapsed_s=clock.elapsed(),
                front_end_s=front_end_s,
                blank_id=self.ctc_blank_id,
                utterances=running.numpy(),
                **evidence,
            )
            stop, confidence = policy.decide(point)
            stop = torch.from_numpy(np.asarray(stop, dtype=bool))
            if is_last:
                stop = torch.ones_like(stop)
            for j in torch.nonzero(stop).flatten().tolist():
                decisions[int(running[j])] = ExitDecision(
                    layer, float(confidence[j]), out.hidden[j, : int(out.lengths[j])],
                    None if decoded is None else decoded.results[j],
                )
            keep = torch.nonzero(~stop).flatten()
            if keep.numel() == 0:
                break
            state = state.select(keep.to(out.lengths.device))
            running = running[keep.cpu()]  # bookkeeping stays on the CPU whatever the device
        return decisions  # type: ignore[return-value]

    # ------------------------------------------------------------------ losses
    def _exit_ctc_loss(self, head, out: ExitOutput, text, text_lengths):
        loss = head(out.hidden, out.lengths, text, text_lengths)
        cer = None
        if not self.training and self.ctc_error_calculator is not None:
            hyp = head.argmax(out.hidden).data
            cer = self.ctc_error_calculator(hyp.cpu(), text.cpu(), is_ctc=True)
        return loss, cer

    def _exit_att_loss(self, decoder, out: ExitOutput, text, text_lengths):
        ys_in, ys_out = add_sos_eos(text, self.sos, self.eos, self.ignore_id)
        decoder_out, _ = decoder(out.hidden, out.lengths, ys_in, text_lengths + 1)
        loss = self.criterion_att(decoder_out, ys_out)
        acc = th_accuracy(decoder_out.view(-1, self.vocab_size), ys_out, ignore_label=self.ignore_id)
        cer = wer = None
        if not self.training and self.error_calculator is not None:
            cer, wer = self.error_calculator(decoder_out.argmax(dim=-1).cpu(), text.cpu())
        return loss, acc, cer, wer, decoder_out, ys_out != self.ignore_id

    def _exit_head_losses(
        self, out: ExitOutput, text, text_lengths, stats, ctc_text=None
    ) -> Dict[str, torch.Tensor]:
        """Exit ``out.layer``'s CTC and attention losses (``"ctc"``, ``"att"``), its decoder's
        (B, U+1, V) output and valid-token mask (``"decoder_out"``, ``"token_mask"``); its
        statistics go into ``stats``. ``ctc_text``: the CTC targets (:meth:`ctc_targets`, default
        ``text``): (B, L') and (B,)."""
        k = out.layer
        head: Dict[str, torch.Tensor] = {}
        if self.ctc_weight > 0.0:
            ctc_text, ctc_lengths = (text, text_lengths) if ctc_text is None else ctc_text
            head["ctc"], cer_ctc = self._exit_ctc_loss(
                self.ctc_for_exit(k), out, ctc_text, ctc_lengths)
            stats[f"loss_ctc_exit{k}"] = head["ctc"].detach()
            stats[f"cer_ctc_exit{k}"] = cer_ctc
        if self.ctc_weight < 1.0:
            head["att"], acc, cer, wer, head["decoder_out"], head["token_mask"] = self._exit_att_loss(
                self.decoder_for_exit(k), out, text, text_lengths
            )
            stats[f"loss_att_exit{k}"] = head["att"].detach()
            stats[f"acc_exit{k}"] = acc
            stats[f"cer_exit{k}"] = cer
            stats[f"wer_exit{k}"] = wer
        return head

    def _distillation_teacher(self, last: ExitOutput, head: Dict[str, torch.Tensor]):
        """The last exit's detached log-posteriors: ``(ctc (B, T', V) or None, decoder
        (B, U+1, V) or None)``; None when self-distillation is off."""
        if not any(self.distill_weights):
            return None
        with torch.no_grad():
            ctc = self.ctc_for_exit(last.layer).log_softmax(last.hidden) if "ctc" in head else None
            att = torch.log_softmax(head["decoder_out"], dim=-1) if "att" in head else None
        return ctc, att

    def _distillation_loss(self, out: ExitOutput, head, teacher, stats) -> torch.Tensor:
        """``ctc_weight * KL_ctc + (1 - ctc_weight) * KL_att`` of exit ``out.layer`` (module doc)."""
        k = out.layer
        teacher_ctc, teacher_att = teacher
        loss = 0.0
        if teacher_ctc is not None:
            student = self.ctc_for_exit(k).log_softmax(out.hidden)
            kl_ctc = distillation_kl(student, teacher_ctc, ~make_pad_mask(out.lengths, maxlen=student.size(1)))
            stats[f"loss_distill_ctc_exit{k}"] = kl_ctc.detach()
            loss = loss + self.ctc_weight * kl_ctc
        if teacher_att is not None:
            student = torch.log_softmax(head["decoder_out"], dim=-1)
            kl_att = distillation_kl(student, teacher_att, head["token_mask"])
            stats[f"loss_distill_att_exit{k}"] = kl_att.detach()
            loss = loss + (1.0 - self.ctc_weight) * kl_att
        stats[f"loss_distill_exit{k}"] = loss.detach()
        return loss

    def forward(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        text: torch.Tensor,
        text_lengths: torch.Tensor,
        **kwargs,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        """Early-exit objective over all exits.

        Args:
            speech: (B, S) or (B, T, D); speech_lengths: (B,)
            text: (B, L) token ids, padded with -1; text_lengths: (B,)
        Returns:
            loss (scalar), stats (see module docstring), batch size weight.
        """
        batch_size = speech.shape[0]
        text[text == -1] = self.ignore_id
        text = text[:, : text_lengths.max()]

        total = 0.0
        stats: Dict[str, Optional[torch.Tensor]] = {}
        outs = self.encode_exits(speech, speech_lengths)
        ctc_text = self.ctc_targets(text, text_lengths) if self.ctc_weight > 0.0 else None
        heads = [self._exit_head_losses(out, text, text_lengths, stats, ctc_text) for out in outs]
        teacher = self._distillation_teacher(outs[-1], heads[-1])
        for i, (weight, out, head) in enumerate(zip(self.exit_loss_weights, outs, heads)):
            k = out.layer
            if "att" not in head:
                loss_k = head["ctc"]
            elif "ctc" not in head:
                loss_k = head["att"]
            else:
                loss_k = self.ctc_weight * head["ctc"] + (1.0 - self.ctc_weight) * head["att"]
            if teacher is not None and i < len(outs) - 1 and self.distill_weights[i] > 0:
                loss_distill = self._distillation_loss(out, head, teacher, stats)
                loss_k = loss_k + self.distill_weights[i] * loss_distill
            stats[f"loss_exit{k}"] = loss_k.detach()
            total = total + weight * loss_k

        # The last exit under ESPnet's usual names (checkpoint selection, averaging, plots).
        last = self.exit_layers[-1]
        for name in ("loss_ctc", "cer_ctc", "loss_att", "acc", "cer", "wer"):
            key = {"acc": "acc_exit", "cer": "cer_exit", "wer": "wer_exit"}.get(name, name + "_exit")
            if f"{key}{last}" in stats:  # e.g. no attention statistics for a CTC-only model
                stats[name] = stats[f"{key}{last}"]
        stats["loss"] = total.detach()
        loss, stats, weight = force_gatherable((total, stats, batch_size), total.device)
        return loss, stats, weight


EarlyExitASRModel.__init__.__signature__ = merged_signature(
    EarlyExitASRModel.__init__, ESPnetASRModel.__init__
)
