"""Exit policies: at which exit an utterance stops.

At every exit of the encoder (shallow first) a policy looks at that exit's CTC posteriors and
decides, per utterance, whether to stop there; utterances that stop drop out of the batch and the
layers above are never computed for them. The last exit always stops.

A model without CTC heads (an attention encoder-decoder such as early-exit Whisper) gives the same
policies its decoder's view instead: the exit's decoder decodes the utterance, and the "frames"
are the decoder's steps along its own hypothesis (its log-posteriors at each output token and at
``<eos>``, teacher-forced on that hypothesis); ``nbest_posterior`` reads the beam search's N-best
scores and ``agreement`` compares the decoded hypotheses. That costs one decoding per exit visited.

=================  ===================================================  ===================
name               confidence at an exit (per utterance)                stops when
=================  ===================================================  ===================
``fixed``          none (``exit_layer`` chosen in advance)              at ``exit_layer``
``entropy``        mean over frames of H(p_t) / log V, in [0, 1]        value <= threshold
``max_posterior``  mean over frames of max_v p_t(v), in [1/V, 1]        value >= threshold
``nbest_posterior`` posterior of the best of the N-best CTC prefix-beam  value >= threshold
                   hypotheses: softmax over their log-probabilities
``agreement``      how many consecutive exits, ending here, produced     value >= threshold
                   the same greedy CTC hypothesis (patience, PABEE)       (the patience p)
``learned``        a controller fitted on dev (:mod:`espnet_eexit.        value >= threshold
                   exit_controller`): P(deeper exits keep the hypothesis)
``budget``         none; the deepest exit that fits a compute budget     relative depth or ms
=================  ===================================================  ===================

The ``oracle`` exit (needs references) is an analysis tool: see :mod:`espnet_eexit.exit_sweep`.

This module needs numpy only (no torch): PyTorch decoding (:mod:`espnet_eexit.model`) and the
torch-free ONNX runtime (:mod:`espnet_eexit.runtime`) share its maths and decisions. Arrays in,
arrays out; CPU torch tensors are accepted wherever an array is.
"""
import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Type

import numpy as np

from eexit_runtime.errors import EarlyExitConfigError
from eexit_runtime.exit_controller import ExitController, feature_matrix


@dataclass
class ExitPoint:
    """What a policy sees at one exit.

    Attributes:
        layer: the exit's layer (1-based).
        next_layer: the next exit's layer, ``None`` at the last exit.
        num_layers: L, the encoder's number of layers.
        log_probs: (B, T', V) array, the exit's CTC log-posteriors (for the utterances still
            running), or for a model without CTC heads its decoder's (B, U+1, V) log-posteriors
            along its own hypotheses (module doc); None for policies that do not read them
            (``needs_posteriors = False``).
        lengths: (B,) integer array, valid frames (decoder steps).
        elapsed_s: encoder wall time so far for this batch (front end + layers up to ``layer``).
        front_end_s: the part of ``elapsed_s`` spent in the front end (features, subsampling
            input): the budget policy projects the next exit's time from the layers' time alone.
        blank_id: the CTC blank's index in the model's token list.
        utterances: (B,) each running utterance's position in the batch the decoding started
            with (``None`` = 0..B-1): policies that keep a history per utterance key on it.
        hypotheses: the exit's hypothesis (token ids) per utterance when decoded by a decoder;
            ``None``: the greedy CTC hypotheses of ``log_probs``.
        nbest_scores: per utterance, the log-probabilities of the decoder's N-best hypotheses;
            ``None``: the CTC prefix beam search over ``log_probs``.
    """

    layer: int
    next_layer: Optional[int]
    num_layers: int
    log_probs: Optional[np.ndarray]
    lengths: np.ndarray
    elapsed_s: float = 0.0
    front_end_s: float = 0.0
    blank_id: int = 0
    utterances: Optional[np.ndarray] = None
    hypotheses: Optional[List[Tuple[int, ...]]] = None
    nbest_scores: Optional[List[Sequence[float]]] = None

    def hypotheses_or_greedy(self) -> List[Tuple[int, ...]]:
        """Each running utterance's hypothesis at this exit: the decoder's, or the greedy CTC one."""
        if self.hypotheses is not None:
            return list(self.hypotheses)
        return [ctc_greedy_ids(lp[: int(n)], self.blank_id)
                for lp, n in zip(np.asarray(self.log_probs), np.asarray(self.lengths))]

    def nbest_posteriors(self, nbest: int) -> np.ndarray:
        """(B,) :func:`nbest_posterior` of each running utterance: over the decoder's N-best
        scores (NaN with fewer than 2: greedy decoding), or a CTC prefix beam search of ``nbest``."""
        if self.nbest_scores is not None:
            return np.asarray([nbest_posterior(s) if len(s) >= 2 else math.nan for s in self.nbest_scores],
                              dtype=np.float64)
        return nbest_posteriors(self.log_probs, self.lengths, nbest, self.blank_id)


def _masked_frame_mean(values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """(B, T) per-frame values -> (B,) mean over each utterance's valid frames."""
    mask = np.arange(values.shape[1])[None, :] < lengths[:, None]
    return np.where(mask, values, 0.0).sum(1) / np.maximum(lengths, 1).astype(values.dtype)


def mean_normalised_entropy(log_probs, lengths) -> np.ndarray:
    """Mean per-frame entropy divided by log V: 0 = one-hot frames, 1 = uniform frames.

    Args:
        log_probs: (B, T, V) log-posteriors.
        lengths: (B,) valid frames.
    Returns:
        (B,) values in [0, 1].
    """
    log_probs, lengths = np.asarray(log_probs), np.asarray(lengths)
    vocab = log_probs.shape[-1]
    # 0 * -inf would be NaN: a probability of exactly 0 adds nothing to the entropy
    terms = np.exp(log_probs) * np.where(np.isneginf(log_probs), 0.0, log_probs)
    entropy = -terms.sum(-1)  # (B, T)
    return _masked_frame_mean(entropy, lengths) / math.log(vocab)


def mean_max_posterior(log_probs, lengths) -> np.ndarray:
    """Mean over frames of the largest frame posterior. (B, T, V), (B,) -> (B,) in [1/V, 1]."""
    log_probs, lengths = np.asarray(log_probs), np.asarray(lengths)
    return _masked_frame_mean(np.exp(log_probs.max(-1)), lengths)


def ctc_prefix_beam_search(
    log_probs,
    beam: int,
    blank: int = 0,
    token_beam: Optional[int] = None,
    min_label_log_prob: float = -10.0,
) -> List[Tuple[Tuple[int, ...], float]]:
    """N-best label sequences of one utterance under CTC, with their log-probabilities.

    The standard prefix beam search: every prefix keeps the probability of its paths ending in
    blank and in its last label, so different alignments of one label sequence are summed. At each
    frame only the ``token_beam`` most likely labels (default: ``beam``) whose log-posterior is at
    least ``min_label_log_prob`` are tried as extensions — on a trained model most frames are
    almost surely blank and then cost one update per prefix (``-inf`` = no such pruning).

    Args:
        log_probs: (T, V) log-posteriors of one utterance (valid frames only).
        beam: number of prefixes kept (N).
        blank: index of the blank label.
    Returns:
        Up to ``beam`` ``(labels, log_prob)`` pairs, best first.
    """
    token_beam = beam if token_beam is None else token_beam
    lp = np.asarray(log_probs, dtype=np.float64)
    neg_inf = float("-inf")
    # prefix -> (log P(prefix, path ends in blank), log P(prefix, path ends in its last label))
    beams: Dict[Tuple[int, ...], Tuple[float, float]] = {(): (0.0, neg_inf)}
    k = min(token_beam, lp.shape[1])
    top_labels = np.argsort(-lp, axis=1, kind="stable")[:, :k]
    top_values = np.take_along_axis(lp, top_labels, axis=1)
    rows = lp.tolist()  # plain lists: indexing them is far cheaper than indexing an array
    top_values, top_labels = top_values.tolist(), top_labels.tolist()
    for t, row in enumerate(rows):
        p_blank = row[blank]
        candidates = [(c, v) for c, v in zip(top_labels[t], top_values[t])
                      if c != blank and v >= min_label_log_prob]
        new: Dict[Tuple[int, ...], List[float]] = {}

        def add(prefix, blank_lp, label_lp):
            old = new.get(prefix)
            if old is None:
                new[prefix] = [blank_lp, label_lp]
            else:
                old[0] = _logaddexp(old[0], blank_lp)
                old[1] = _logaddexp(old[1], label_lp)

        for prefix, (pb, pnb) in beams.items():
            total = _logaddexp(pb, pnb)
            add(prefix, total + p_blank, neg_inf)  # stay: emit blank
            if prefix:  # stay: repeat the last label (collapses)
                add(prefix, neg_inf, pnb + row[prefix[-1]])
            for c, c_lp in candidates:
                extended = prefix + (c,)
                if prefix and c == prefix[-1]:
                    # a repeated label is a new one only after a blank
                    add(extended, neg_inf, pb + c_lp)
                else:
                    add(extended, neg_inf, total + c_lp)
        ranked = sorted(new.items(), key=lambda kv: _logaddexp(*kv[1]), reverse=True)[:beam]
        beams = {prefix: (v[0], v[1]) for prefix, v in ranked}
    return sorted(((p, _logaddexp(*v)) for p, v in beams.items()), key=lambda x: x[1], reverse=True)


def _logaddexp(a: float, b: float) -> float:
    if a == float("-inf"):
        return b
    if b == float("-inf"):
        return a
    m = max(a, b)
    return m + math.log1p(math.exp(-abs(a - b)))


def ctc_greedy_ids(log_probs, blank: int) -> Tuple[int, ...]:
    """The best path of one utterance's (T, V) CTC posteriors: frame argmax, repeats merged,
    blanks dropped."""
    best = np.asarray(log_probs).argmax(-1)
    if best.size == 0:
        return ()
    keep = np.ones(best.shape, dtype=bool)
    keep[1:] = best[1:] != best[:-1]
    best = best[keep]
    return tuple(best[best != blank].tolist())


def agreement_count(hypothesis: Tuple[int, ...], previous: Optional[Tuple[Tuple[int, ...], int]]) -> int:
    """How many consecutive exits, ending with this one, gave ``hypothesis``; ``previous`` is the
    previous exit's ``(hypothesis, count)`` (None at the first exit)."""
    if previous is not None and previous[0] == hypothesis:
        return previous[1] + 1
    return 1


def nbest_posteriors(log_probs, lengths, nbest: int, blank: int) -> np.ndarray:
    """(B,) :func:`nbest_posterior` of each utterance's N-best CTC prefix beam search."""
    values = []
    for lp, length in zip(np.asarray(log_probs), np.asarray(lengths)):
        hyps = ctc_prefix_beam_search(lp[: int(length)], nbest, blank=blank)
        values.append(nbest_posterior([score for _, score in hyps]))
    return np.asarray(values, dtype=np.float64)


def nbest_posterior(scores: Sequence[float]) -> float:
    """Posterior of the best hypothesis among the N-best: softmax over their log-probabilities."""
    if len(scores) == 0:
        raise ValueError("nbest_posterior needs at least one hypothesis score")
    values = np.asarray(list(scores), dtype=np.float64)
    return float(np.exp(values.max() - np.logaddexp.reduce(values)))


class ExitPolicy(ABC):
    """Decides, at each exit, which utterances stop there."""

    name: str = ""
    #: whether :meth:`decide` reads ``ExitPoint.log_probs`` (else the CTC heads are not run)
    needs_posteriors: bool = True
    #: threshold range (inclusive) and whether larger values mean "more confident"
    threshold_range: Tuple[float, float] = (0.0, 1.0)

    def __init__(self, threshold: Optional[float] = None):
        self.threshold = threshold

    def check_options(self) -> None:
        """Check what does not depend on a model (threshold range, ...): recipes do it before
        their first stage. Raises :class:`EarlyExitConfigError`."""

    def bind(self, exit_layers: Sequence[int], num_layers: int) -> "ExitPolicy":
        """Check the policy against a model's exits (raises :class:`EarlyExitConfigError`)."""
        self.check_options()
        return self

    @abstractmethod
    def decide(self, point: ExitPoint) -> Tuple[np.ndarray, np.ndarray]:
        """Return ``(stop, confidence)``: (B,) bool and (B,) float arrays (NaN when not applicable)."""

    def describe(self) -> str:
        return self.name if self.threshold is None else f"{self.name} threshold={self.threshold:g}"

    def _check_threshold(self) -> float:
        low, high = self.threshold_range
        if self.threshold is None:
            raise EarlyExitConfigError(
                f"exit policy '{self.name}' needs --exit_threshold (a value in [{low:g}, {high:g}])"
            )
        t = float(self.threshold)
        if not (low <= t <= high) or math.isnan(t):
            raise EarlyExitConfigError(
                f"--exit_threshold {self.threshold}: out of range for policy '{self.name}' "
                f"(expected a value in [{low:g}, {high:g}])"
            )
        return t


def _no_confidence(point: ExitPoint) -> np.ndarray:
    return np.full(len(point.lengths), np.nan)


class FixedExit(ExitPolicy):
    """Every utterance stops at ``exit_layer`` (a static budget)."""

    name = "fixed"
    needs_posteriors = False

    def __init__(self, exit_layer: Optional[int] = None):
        super().__init__(None)
        self.exit_layer = exit_layer

    def bind(self, exit_layers, num_layers):
        if self.exit_layer is None:
            self.exit_layer = exit_layers[-1]
        if self.exit_layer not in exit_layers:
            raise EarlyExitConfigError(
                f"--exit_layer {self.exit_layer} is not an exit of this model; "
                f"its exits are {list(exit_layers)}"
            )
        return self

    def decide(self, point):
        stop = np.full(len(point.lengths), point.layer >= self.exit_layer)
        return stop, _no_confidence(point)

    def describe(self):
        return f"fixed exit_layer={self.exit_layer}"


class EntropyExit(ExitPolicy):
    """Stop when the mean normalised frame entropy of the exit's posteriors <= threshold."""

    name = "entropy"

    def check_options(self):
        self._check_threshold()

    def decide(self, point):
        value = mean_normalised_entropy(point.log_probs, point.lengths)
        return value <= self.threshold, value


class MaxPosteriorExit(ExitPolicy):
    """Stop when the mean over frames of the largest frame posterior >= threshold."""

    name = "max_posterior"

    def check_options(self):
        self._check_threshold()

    def decide(self, point):
        value = mean_max_posterior(point.log_probs, point.lengths)
        return value >= self.threshold, value


class NBestPosteriorExit(ExitPolicy):
    """The paper's sentence confidence: the best hypothesis' share of the N-best probability mass.

    Args:
        threshold: stop when the best hypothesis' posterior >= threshold.
        nbest: N, the prefix beam width (>= 2; with N = 1 the posterior is always 1).
    The CTC blank is the model's (``ExitPoint.blank_id``).
    """

    name = "nbest_posterior"

    def __init__(self, threshold: Optional[float] = None, nbest: int = 8):
        super().__init__(threshold)
        self.nbest = nbest

    def check_options(self):
        self._check_threshold()
        if not isinstance(self.nbest, int) or self.nbest < 2:
            raise EarlyExitConfigError(
                f"--exit_nbest {self.nbest}: must be an integer >= 2 (with N = 1 the best "
                "hypothesis' posterior is always 1 and every utterance would stop at the first exit)"
            )

    def decide(self, point):
        value = point.nbest_posteriors(self.nbest)
        return value >= self.threshold, value

    def describe(self):
        return f"{super().describe()} nbest={self.nbest}"


class AgreementExit(ExitPolicy):
    """Patience (PABEE-style): stop when the hypotheses (greedy CTC, or the decoder's) of the last
    ``threshold`` consecutive exits are the same (``threshold`` = the patience p >= 2).

    Its value at an exit is :func:`agreement_count`. It keeps each running utterance's last
    hypothesis between exits (keyed by ``ExitPoint.utterances``) and starts afresh at the first exit.
    """

    name = "agreement"
    threshold_range = (2.0, math.inf)

    def check_options(self):
        self._check_threshold()

    def bind(self, exit_layers, num_layers):
        super().bind(exit_layers, num_layers)
        self._first_exit = exit_layers[0]
        self._previous: Dict[int, Tuple[Tuple[int, ...], int]] = {}
        return self

    def decide(self, point):
        if point.layer == self._first_exit:
            self._previous = {}
        lengths = np.asarray(point.lengths)
        utterances = np.arange(len(lengths)) if point.utterances is None else np.asarray(point.utterances)
        counts = []
        for hyp, utt in zip(point.hypotheses_or_greedy(), utterances.tolist()):
            count = agreement_count(hyp, self._previous.get(utt))
            self._previous[utt] = (hyp, count)
            counts.append(count)
        value = np.asarray(counts, dtype=np.float64)
        return value >= self.threshold, value


class LearnedExit(ExitPolicy):
    """Stop when a controller fitted on dev (:class:`espnet_eexit.exit_controller.ExitController`)
    gives a probability >= threshold that the deeper exits will not change this exit's hypothesis.

    Args:
        threshold: in [0, 1].
        controller: the fitted controller, or the path of its JSON file.
        nbest: N of the N-best posterior feature.
    """

    name = "learned"

    def __init__(self, threshold: Optional[float] = None, controller=None, nbest: int = 8):
        super().__init__(threshold)
        self.controller = controller
        self.nbest = nbest

    def check_options(self):
        self._check_threshold()
        if self.controller is None:
            raise EarlyExitConfigError(
                "exit policy 'learned' needs a fitted controller (--exit_controller FILE, made by "
                "python -m espnet_eexit.bin.fit_exit_controller)")

    def bind(self, exit_layers, num_layers):
        super().bind(exit_layers, num_layers)
        if not isinstance(self.controller, ExitController):
            source = str(self.controller)
            self.controller = ExitController.load(self.controller)
        else:
            source = "the exit controller"
        self.controller.check_model(exit_layers, num_layers, source)
        self._agreement = AgreementExit(2).bind(exit_layers, num_layers)
        return self

    def decide(self, point):
        features = exit_features(point, self.nbest, self._agreement.decide(point)[1])
        value = self.controller.probability(features)
        return value >= self.threshold, value


def exit_measures(point: ExitPoint, nbest: int, agreement: np.ndarray) -> Dict[str, np.ndarray]:
    """Every confidence measure of :data:`CONFIDENCE_POLICIES` at an exit: ``{name: (B,)}``
    (``agreement`` is the caller's :class:`AgreementExit` value; NaN for an utterance with no
    frames)."""
    log_probs, lengths = np.asarray(point.log_probs), np.asarray(point.lengths)
    empty = lengths == 0
    measures = dict(
        entropy=mean_normalised_entropy(log_probs, lengths),
        max_posterior=mean_max_posterior(log_probs, lengths),
        nbest_posterior=point.nbest_posteriors(nbest),
        agreement=np.asarray(agreement, dtype=np.float64),
    )
    return {name: np.where(empty, np.nan, value) for name, value in measures.items()}


def exit_features(point: ExitPoint, nbest: int, agreement: np.ndarray) -> np.ndarray:
    """(B, F) the controller's inputs at an exit (:data:`espnet_eexit.exit_controller.FEATURES`)."""
    return feature_matrix(exit_measures(point, nbest, agreement), point.layer / point.num_layers)


class BudgetExit(ExitPolicy):
    """The deepest exit that fits a per-utterance compute budget.

    Args:
        threshold: the budget as relative encoder depth in (0, 1]: stop at the deepest exit k
            with k / L <= budget (the first exit if none fits).
        budget_ms: instead, a wall-time budget for the encoder in milliseconds: stop before the
            next exit when the time measured so far plus the measured time per layer times the
            layers to the next exit would exceed it (decided per batch, as the batch shares time).
    """

    name = "budget"
    needs_posteriors = False
    threshold_range = (1e-9, 1.0)

    def __init__(self, threshold: Optional[float] = None, budget_ms: Optional[float] = None):
        super().__init__(threshold)
        self.budget_ms = budget_ms

    def check_options(self):
        if (self.threshold is None) == (self.budget_ms is None):
            raise EarlyExitConfigError(
                "exit policy 'budget' needs exactly one of --exit_threshold (relative depth in "
                "(0, 1]) or --exit_budget_ms (milliseconds > 0)"
            )
        if self.threshold is not None:
            self._check_threshold()
        elif not self.budget_ms > 0:
            raise EarlyExitConfigError(f"--exit_budget_ms {self.budget_ms}: must be > 0")

    def decide(self, point):
        batch = len(point.lengths)
        if point.next_layer is None:
            fits_next = False
        elif self.threshold is not None:
            fits_next = point.next_layer / point.num_layers <= self.threshold + 1e-9
        else:
            per_layer = (point.elapsed_s - point.front_end_s) / point.layer
            projected = point.elapsed_s + per_layer * (point.next_layer - point.layer)
            fits_next = projected * 1000.0 <= self.budget_ms
        return np.full(batch, not fits_next), _no_confidence(point)

    def describe(self):
        if self.budget_ms is not None:
            return f"budget {self.budget_ms:g} ms"
        return f"budget relative_depth={self.threshold:g}"


EXIT_POLICIES: Dict[str, Type[ExitPolicy]] = {
    cls.name: cls for cls in (FixedExit, EntropyExit, MaxPosteriorExit, NBestPosteriorExit, AgreementExit,
                              LearnedExit, BudgetExit)
}

#: policies whose confidence can be recorded at every exit and thresholded afterwards (sweep)
CONFIDENCE_POLICIES = ("entropy", "max_posterior", "nbest_posterior", "agreement")


def build_exit_policy(
    name: str,
    threshold: Optional[float] = None,
    exit_layer: Optional[int] = None,
    nbest: int = 8,
    budget_ms: Optional[float] = None,
    controller=None,
) -> ExitPolicy:
    """Build a policy by its registered name (see :data:`EXIT_POLICIES`); ``controller`` (an
    :class:`ExitController` or its file) is the ``learned`` policy's."""
    if name not in EXIT_POLICIES:
        raise EarlyExitConfigError(
            f"unknown exit policy {name!r}; choose one of {sorted(EXIT_POLICIES)}"
        )
    if name != "fixed" and exit_layer is not None:
        raise EarlyExitConfigError(f"--exit_layer is only for --exit_policy fixed (got {name!r})")
    if name == "fixed":
        if threshold is not None:
            raise EarlyExitConfigError("--exit_policy fixed takes --exit_layer, not --exit_threshold")
        return FixedExit(exit_layer)
    if name == "nbest_posterior":
        return NBestPosteriorExit(threshold, nbest=nbest)
    if name == "budget":
        return BudgetExit(threshold, budget_ms=budget_ms)
    if name == "learned":
        return LearnedExit(threshold, controller=controller, nbest=nbest)
    return EXIT_POLICIES[name](threshold)


def parse_policy_spec(spec: str, nbest: int = 8, controller=None) -> ExitPolicy:
    """A policy from ``name:value`` (recipes' ``--exit_policies``, the runtime's ``--policy``).

    ``entropy:0.2``, ``max_posterior:0.9``, ``nbest_posterior:0.9``, ``agreement:2``, ``learned:0.8``
    (threshold; ``learned`` needs ``controller``), ``fixed:6`` (the
    exit layer; ``fixed`` alone = the last exit), ``budget:0.5`` (relative depth) or
    ``budget:40ms`` (encoder wall time).
    """
    name, sep, value = spec.partition(":")
    if name == "fixed":
        if sep and not value.isdigit():
            raise EarlyExitConfigError(f"policy {spec!r}: fixed takes an exit layer, e.g. fixed:6")
        return build_exit_policy("fixed", exit_layer=int(value) if value else None)
    if not sep or not value:
        raise EarlyExitConfigError(f"policy {spec!r}: expected policy:threshold, e.g. entropy:0.2")
    if name == "budget" and value.endswith("ms"):
        try:
            budget_ms = float(value[:-2])
        except ValueError:
            raise EarlyExitConfigError(f"policy {spec!r}: {value!r} is not a number of milliseconds")
        return build_exit_policy("budget", budget_ms=budget_ms)
    try:
        threshold = float(value)
    except ValueError:
        raise EarlyExitConfigError(f"policy {spec!r}: threshold {value!r} is not a number")
    return build_exit_policy(name, threshold=threshold, nbest=nbest, controller=controller)


class Stopwatch:
    """Wall time since construction, in seconds (the budget policy's clock).

    Args:
        sync: called before each reading. On a GPU kernels run asynchronously: pass the device's
            synchronisation (``torch.cuda.synchronize``) so that a reading covers the computation
            issued before it, not only its launch.
    """

    def __init__(self, sync: Optional[Callable[[], None]] = None):
        self._sync = sync
        self.start = self._now()

    def _now(self) -> float:
        if self._sync is not None:
            self._sync()
        return time.perf_counter()

    def elapsed(self) -> float:
        return self._now() - self.start
