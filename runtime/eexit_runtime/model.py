"""Run an exported early-exit model segment by segment; stop where the exit policy says.

The loop is :meth:`espnet_eexit.model.EarlyExitASRModel.encode_with_policy` on ONNX graphs: run the
front end and the first exit's segment, let the policy decide per utterance, drop the utterances
that stop (and the padding beyond the longest one still running), run the next segment for the
others. A segment above an utterance's exit never runs for it; ``graph_runs`` counts the session
runs per graph.

An export with decoders (early-exit Whisper) decodes greedily with the exit's decoder: its
``cross_kv<k>`` graph once, then one ``decoder<k>`` step per token for the utterances still
decoding. Its policies read the decoder (:mod:`espnet_eexit.exit_policy`), so they decode at each
exit passed, each exit starting from the previous exit's hypothesis as a draft
(:meth:`EarlyExitRuntime.decode_with_decoder`); ``fixed`` and ``budget`` decode only where
utterances stop.
"""
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from eexit_runtime.errors import EarlyExitConfigError
from eexit_runtime.exit_policy import (ExitPoint, ExitPolicy, Stopwatch, ctc_greedy_ids,
                                       parse_policy_spec)
from eexit_runtime.features import build_features
from eexit_runtime.text import TokensToText

MANIFEST = "model.json"  # written by espnet_eexit.export.onnx_segments
FORMAT = "espnet_eexit.onnx_segments"
FORMAT_VERSION = 1
PRECISIONS = ("fp32", "int8")
CONTROLLER = "exit_controller.json"  # the learned policy's controller, if the export has one


@dataclass
class RuntimeResult:
    """One utterance's result.

    Attributes:
        text: the transcript (greedy CTC, or the exit decoder's greedy decoding).
        token_ids: the token ids of the hypothesis (CTC: blanks and repeats removed).
        exit_layer: the exit it stopped at; no layer above it ran for this utterance.
        confidence: the policy's value at that exit (NaN for fixed/budget).
    """

    text: str
    token_ids: List[int]
    exit_layer: int
    confidence: float


def _session_options(num_threads: int, memory_arena: bool):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = num_threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    # Spinning worker threads wait for work by busy-looping: on a 2-vCPU machine 2 threads
    # then took 69 ms where 1 took 16 (full depth, batch 1 x 5 s, benchmark_runtime); without
    # spinning 2 threads take 19.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # The memory arena keeps the largest buffers of every shape seen: peak memory transcribing
    # 15 s is 240 MB with it and 133 MB without, at the same speed at batch 1; large batches run
    # ~2.4 x faster with it (8 x 15 s: 534 vs 1287 ms). Off by default: a device decodes batch 1.
    options.enable_cpu_mem_arena = memory_arena
    options.enable_mem_pattern = False
    return options


class EarlyExitRuntime:
    """An exported early-exit model (a directory with ``model.json``) on onnxruntime.

    Args:
        model_dir: the export directory (``python -m espnet_eexit.bin.export_onnx``).
        precision: ``fp32`` or ``int8`` (needs an export with ``--quantize int8``).
        num_threads: onnxruntime intra-op threads.
        memory_arena: onnxruntime's memory arena: faster on large batches, ~1.8 x the peak memory.
        reuse_hypotheses: an export with decoders, under a policy that reads them: each exit's
            decoder starts from the previous exit's hypothesis as a draft
            (:meth:`decode_with_decoder`; same results, fewer decoder steps).
    """

    def __init__(self, model_dir: Union[str, Path], precision: str = "fp32", num_threads: int = 1,
                 memory_arena: bool = False, reuse_hypotheses: bool = True):
        import onnxruntime

        self.model_dir = Path(model_dir)
        self.reuse_hypotheses = reuse_hypotheses
        manifest_file = self.model_dir / MANIFEST
        if not manifest_file.is_file():
            raise EarlyExitConfigError(
                f"{manifest_file}: no such file; --model_dir must be a directory written by "
                "python -m espnet_eexit.bin.export_onnx")
        try:
            manifest = json.loads(manifest_file.read_text())
        except json.JSONDecodeError as e:
            raise EarlyExitConfigError(f"{manifest_file}: not valid JSON ({e})")
        if manifest.get("format") != FORMAT or manifest.get("version") != FORMAT_VERSION:
            raise EarlyExitConfigError(
                f"{manifest_file}: format {manifest.get('format')!r} version {manifest.get('version')!r}; "
                f"this runtime reads {FORMAT!r} version {FORMAT_VERSION}")
        if precision not in PRECISIONS:
            raise EarlyExitConfigError(f"--precision {precision}: choose one of {PRECISIONS}")
        self.manifest = manifest
        self.precision = precision
        self.exit_layers: List[int] = list(manifest["exit_layers"])
        self.num_layers: int = int(manifest["num_layers"])
        self.blank_id: int = int(manifest["blank_id"])
        self.token_list: List[str] = list(manifest["token_list"])
        features = manifest["features"]
        self.fs = int(features["fs"])
        self.max_input_seconds = float(manifest["max_input_seconds"])
        self.features = build_features(features, self.model_dir / features["file"] if "file" in features else None)
        # Whisper's front end reads (B, n_mels, T); ESPnet's (B, T, n_mels)
        self.channels_first = features.get("kind") == "whisper_log_mel"
        self.decoder: Optional[dict] = manifest.get("decoder")
        bpemodel = manifest.get("bpemodel")
        self.tokens_to_text = TokensToText(manifest["token_type"],
                                           self.model_dir / bpemodel if bpemodel else None)
        options = _session_options(num_threads, memory_arena)
        self.sessions: Dict[str, "onnxruntime.InferenceSession"] = {}
        self.graph_files: Dict[str, Path] = {}
        for graph in manifest["graphs"]:
            name = graph["name"]
            key = "file" if precision == "fp32" else "int8_file"
            if key not in graph:
                raise EarlyExitConfigError(
                    f"{manifest_file}: graph {name} has no {precision} file (export with --quantize int8)")
            path = self.model_dir / graph[key]
            if not path.is_file():
                raise EarlyExitConfigError(f"{path}: no such file (listed in {manifest_file})")
            self.graph_files[name] = path
            self.sessions[name] = onnxruntime.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"])
        for layer in self.exit_layers:
            head = f"decoder{layer}" if self.decoder else f"exit{layer}"
            if head not in self.sessions:
                raise EarlyExitConfigError(f"{manifest_file}: no graph {head} for exit {layer}")
            vocab = self.sessions[head].get_outputs()[-1].shape[-1]
            if isinstance(vocab, int) and vocab != len(self.token_list):
                raise EarlyExitConfigError(
                    f"{manifest_file}: token_list has {len(self.token_list)} tokens but exit {layer}'s "
                    f"{'decoder' if self.decoder else 'CTC head'} outputs {vocab}: the manifest and "
                    "graphs come from different models")
        # what the front end hands to the segments, in the graphs' input order
        self.carried_names = [o.name for o in self.sessions["front_end"].get_outputs()]
        self.graph_runs: Counter = Counter()
        # encoder layers run (x utterances), as asr_inference counts them with hooks
        self.layers_computed = 0
        self._span = {g["exit_layer"]: g["exit_layer"] - g["from_layer"]
                      for g in manifest["graphs"] if "exit_layer" in g}

    # ------------------------------------------------------------------ pieces
    def bytes_up_to_exit(self, layer: int) -> int:
        """What a device must ship to run up to exit ``layer``: front end + segments to it."""
        names = ["front_end"] + [f"exit{k}" for k in self.exit_layers if k <= layer]
        if self.decoder:
            names += [f"cross_kv{layer}", f"decoder{layer}"]
        arrays = self.manifest["features"].get("file")  # none for a waveform front end
        return sum(self.graph_files[n].stat().st_size for n in names) + \
            ((self.model_dir / arrays).stat().st_size if arrays else 0)

    def _run(self, name: str, feeds: Dict[str, np.ndarray]) -> List[np.ndarray]:
        self.graph_runs[name] += 1
        return self.sessions[name].run(None, feeds)

    def batch_features(self, waveforms: Sequence[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
        """(B, T, n_mels) zero-padded log-mel features and (B,) frames, utterance by utterance (a
        waveform front end: (B, S, 1) samples and (B,) numbers of samples)."""
        for w in waveforms:
            if len(w) > self.max_input_seconds * self.fs:
                raise EarlyExitConfigError(
                    f"audio of {len(w) / self.fs:.1f} s: this export takes at most {self.max_input_seconds:g} s "
                    "(export again with --max_input_seconds)")
        feats = [self.features(w) for w in waveforms]
        lengths = np.array([f.shape[0] for f in feats], dtype=np.int64)
        batch = np.zeros((len(feats), int(lengths.max()), feats[0].shape[1]), dtype=np.float32)
        for i, f in enumerate(feats):
            batch[i, : f.shape[0]] = f
        if self.channels_first:
            batch = np.ascontiguousarray(batch.transpose(0, 2, 1))
        return batch, lengths

    def front_end(self, waveforms: Sequence[np.ndarray]) -> Dict[str, np.ndarray]:
        """The input of layer 1: ``{"hidden": (B, T', D), "lengths": (B,)}`` and, for layers with
        relative positions, ``"pos_emb"`` (1, P, D)."""
        feats, lengths = self.batch_features(waveforms)
        outputs = self._run("front_end", {"feats": feats, "feats_lengths": lengths})
        return dict(zip(self.carried_names, outputs))

    def segment(self, layer: int, carried: Dict[str, np.ndarray]) -> Tuple[Dict[str, np.ndarray], np.ndarray]:
        """Run the layers up to exit ``layer``: the next segment's input and exit ``layer``'s CTC
        log-posteriors (B, T', V) (an export with decoders: the exit's output (B, T', D))."""
        hidden, log_probs = self._run(f"exit{layer}", carried)
        self.layers_computed += self._span[layer] * hidden.shape[0]
        return {**carried, "hidden": hidden}, log_probs

    def iter_exits(self, waveforms: Sequence[np.ndarray]) -> Iterator[Tuple[int, np.ndarray, np.ndarray]]:
        """``(layer, log_probs (B, T', V), lengths (B,))`` at every exit, shallow first; stop
        iterating and no further segment runs."""
        carried = self.front_end(waveforms)
        for layer in self.exit_layers:
            carried, log_probs = self.segment(layer, carried)
            yield layer, log_probs, carried["lengths"]

    @staticmethod
    def select(carried: Dict[str, np.ndarray], keep: np.ndarray) -> Dict[str, np.ndarray]:
        """Keep the utterances ``keep`` and cut the frames beyond the longest of them, as
        :meth:`espnet_eexit.encoder.early_exit.EncoderState.select` does."""
        lengths = carried["lengths"][keep]
        t_max = int(lengths.max())
        out = {"hidden": carried["hidden"][keep, :t_max], "lengths": lengths}
        if "pos_emb" in carried:
            pos_emb, steps = carried["pos_emb"], carried["hidden"].shape[1]
            if pos_emb.shape[1] == 2 * steps - 1:  # relative offsets -(T-1)..T-1, centred on 0
                centre = pos_emb.shape[1] // 2
                pos_emb = pos_emb[:, centre - t_max + 1: centre + t_max]
            else:
                pos_emb = pos_emb[:, :t_max]
            out["pos_emb"] = pos_emb
        return out

    def policy(self, policy: Union[str, ExitPolicy, None], controller: Optional[Path] = None) -> ExitPolicy:
        """A bound policy from a spec (``entropy:0.3``, ``fixed:6``, ``budget:40ms``, ``learned:0.8``
        ...); None = the export's ``default_policy``. ``learned`` reads ``controller``, by default
        the export's ``exit_controller.json``."""
        if policy is None:
            policy = self.manifest.get("default_policy", "fixed")
        if isinstance(policy, str):
            if controller is None and (self.model_dir / CONTROLLER).is_file():
                controller = self.model_dir / CONTROLLER
            policy = parse_policy_spec(policy, controller=controller)
        return policy.bind(self.exit_layers, self.num_layers)

    def decode(self, log_probs: np.ndarray) -> Tuple[str, List[int]]:
        """Greedy CTC text of one utterance's (T', V) log-posteriors."""
        ids = list(ctc_greedy_ids(log_probs, self.blank_id))
        return self.text(ids), ids

    def text(self, ids: Sequence[int]) -> str:
        return self.tokens_to_text([self.token_list[i] for i in ids])

    def decode_with_decoder(self, layer: int, memory: np.ndarray, lengths: np.ndarray,
                            drafts: Optional[Sequence[Sequence[int]]] = None
                            ) -> Tuple[List[List[int]], List[np.ndarray]]:
        """Greedy decoding of a batch by exit ``layer``'s decoder, as ESPnet's beam search with
        beam 1 does it: at most ``maxlenratio`` x frames tokens (all frames for 0, never past the
        decoder's positions), then <eos>.

        ``drafts`` (the previous exit's hypotheses) are checked in one decoder run each: the
        decoder's own choices along a draft are read off at once, and step-by-step decoding
        resumes only from the first token where it chooses otherwise. The result is the same as
        without drafts (greedy decoding is deterministic); deeper exits mostly agree with the
        previous one, so most of their steps are saved.

        Args:
            memory: (B, T', D) the exit's output; lengths: (B,) valid frames.
        Returns:
            Per utterance the token ids (prompt and <eos> excluded) and the (U+1, V) log-posteriors
            at each step (token u, then <eos>; fewer where the decoder's positions end).
        """
        spec = self.decoder
        eos, prompt, limit, ratio = spec["eos"], list(spec["prompt"]), spec["max_output_length"], spec["maxlenratio"]
        cross_kv = self._run(f"cross_kv{layer}", {"memory": memory})[0]  # (L, 2, B, H, T', d)
        batch = memory.shape[0]
        maxlen = [min(max(1, int(ratio * n)) if ratio > 0 else int(n), limit) for n in lengths.tolist()]
        hyps: List[List[int]] = [[] for _ in range(batch)]
        steps: List[List[np.ndarray]] = [[] for _ in range(batch)]

        def run(rows: List[int], tokens: np.ndarray, start: int) -> np.ndarray:
            return self._run(f"decoder{layer}", {
                "tokens": tokens, "cross_kv": np.ascontiguousarray(cross_kv[:, :, rows]),
                "memory_lengths": lengths[rows], "start": np.array(start, dtype=np.int64)})[0]

        def consume(b: int, row: np.ndarray) -> bool:
            """Take the greedy choice of ``row``; True while utterance ``b`` goes on."""
            steps[b].append(row)
            token = int(row.argmax())
            if token == eos:
                return False
            hyps[b].append(token)
            return len(hyps[b]) < maxlen[b]

        active = list(range(batch))
        if drafts is not None:
            # one run reads the decoder's choices along every draft (padded: causal attention
            # keeps the padding out of the earlier positions)
            inputs = [list(d[: limit - 1]) for d in drafts]
            tokens = np.full((batch, len(prompt) + max(len(d) for d in inputs)), eos, dtype=np.int64)
            tokens[:, : len(prompt)] = prompt
            for b, d in enumerate(inputs):
                tokens[b, len(prompt): len(prompt) + len(d)] = d
            checked = run(active, tokens, len(prompt) - 1)  # (B, 1 + longest draft, V)
            active = []
            for b, d in enumerate(inputs):
                for i in range(len(d) + 1):
                    going = consume(b, checked[b, i])
                    if not going:
                        if len(hyps[b]) == maxlen[b] and i + 1 <= len(d) and hyps[b][-1] == d[i]:
                            # cut by maxlen on the draft: the <eos> step was read too
                            steps[b].append(checked[b, i + 1])
                        break
                    if i == len(d) or hyps[b][-1] != d[i]:  # past the draft, or chose otherwise
                        active.append(b)
                        break
        while active:
            # utterances whose prefixes have one length decode together
            by_length: Dict[int, List[int]] = {}
            for b in active:
                by_length.setdefault(len(hyps[b]), []).append(b)
            active = []
            for rows in by_length.values():
                tokens = np.array([prompt + hyps[b] for b in rows], dtype=np.int64)
                for b, row in zip(rows, run(rows, tokens, tokens.shape[1] - 1)[:, 0]):
                    if consume(b, row):
                        active.append(b)
        for b in range(batch):
            # cut by maxlen: <eos> is appended unscored; score it as PyTorch's teacher forcing does
            if len(steps[b]) == len(hyps[b]) and len(hyps[b]) < limit:
                steps[b].append(run([b], np.array([prompt + hyps[b]], dtype=np.int64), len(prompt) + len(hyps[b]) - 1)[0, 0])
        return hyps, [np.stack(s) for s in steps]

    @staticmethod
    def _decoded_point(hyps: List[List[int]], steps: List[np.ndarray]) -> Dict:
        """The ExitPoint fields of a decoder's decoding (:mod:`espnet_eexit.exit_policy`). Greedy
        decoding has no N-best list, hence no N-best posterior (empty scores: NaN)."""
        lengths = np.array([s.shape[0] for s in steps], dtype=np.int64)
        log_probs = np.zeros((len(steps), int(lengths.max()), steps[0].shape[1]), dtype=np.float32)
        for i, s in enumerate(steps):
            log_probs[i, : s.shape[0]] = s
        return dict(log_probs=log_probs, lengths=lengths, hypotheses=[tuple(h) for h in hyps],
                    nbest_scores=[[] for _ in hyps])

    # ------------------------------------------------------------------ the early-exit loop
    def transcribe(self, waveforms: Sequence[np.ndarray],
                   policy: Union[str, ExitPolicy, None] = None) -> List[RuntimeResult]:
        """Transcribe a batch of 1-D waveforms (at the model's ``fs``), each from the exit
        ``policy`` picks (default: the export's ``default_policy``, else the last exit)."""
        policy = self.policy(policy)
        clock = Stopwatch()
        carried = self.front_end(waveforms)
        front_end_s = clock.elapsed()
        running = np.arange(len(waveforms))  # batch positions still in the encoder
        results: List[Optional[RuntimeResult]] = [None] * len(waveforms)
        drafts = None  # the previous exit's hypotheses of the running utterances
        for i, layer in enumerate(self.exit_layers):
            carried, output = self.segment(layer, carried)
            lengths = carried["lengths"]
            is_last = i == len(self.exit_layers) - 1
            evidence = dict(log_probs=output if policy.needs_posteriors else None, lengths=lengths)
            hyps = None  # the decoder's hypotheses here, indexed by running position
            if self.decoder and policy.needs_posteriors:
                hyps, steps = self.decode_with_decoder(layer, output, lengths,
                                                       drafts if self.reuse_hypotheses else None)
                evidence = self._decoded_point(hyps, steps)
            point = ExitPoint(
                layer=layer, next_layer=None if is_last else self.exit_layers[i + 1],
                num_layers=self.num_layers, elapsed_s=clock.elapsed(), front_end_s=front_end_s,
                blank_id=self.blank_id, utterances=running, **evidence,
            )
            stop, confidence = policy.decide(point)
            stop = np.ones(len(lengths), dtype=bool) if is_last else np.asarray(stop, dtype=bool)
            stopped = np.flatnonzero(stop)
            if self.decoder and hyps is None and stopped.size:  # fixed, budget: decode where they stop
                hyps = dict(zip(stopped.tolist(), self.decode_with_decoder(
                    layer, output[stopped][:, : int(lengths[stopped].max())], lengths[stopped])[0]))
            for j in stopped:
                if self.decoder:
                    ids = list(hyps[j])
                    text = self.text(ids)
                else:
                    text, ids = self.decode(output[j, : lengths[j]])
                results[running[j]] = RuntimeResult(text, ids, layer, float(confidence[j]))
            keep = np.flatnonzero(~stop)
            if keep.size == 0:
                break
            if self.decoder and policy.needs_posteriors:
                drafts = [hyps[j] for j in keep]
            carried = self.select(carried, keep)
            running = running[keep]
        return results  # type: ignore[return-value]
