"""Measure what early exits cost and save, in one run (ratios, not absolute timings, are the point).

    python -m espnet_eexit.bin.benchmark                       # the paper's 12 x 256 Conformer-CTC
    python -m espnet_eexit.bin.benchmark --config conf/x.yaml  # any ESPnet ASR training config
    python -m espnet_eexit.bin.benchmark --steps 5 --batch_sizes 1 8 --lengths 5 15
    python -m espnet_eexit.bin.benchmark --config egs2/synth_en/asr1/conf/train_asr_eexit_whisper.yaml \
        --vocab_size 51864 --whisper_model tools/pretrained/whisper-tiny.en   # vs ESPnet's whisper

Prints:
* parameters: total, encoder, per exit head;
* training step time (forward + backward + optimizer step) with every exit vs a single last exit,
  same weights, measured interleaved in this process (batch ``--batch_size`` x ``--seconds``);
* for every batch size x audio length: encoder time to each exit vs the full encoder (eval mode,
  ``max_exit_layer=k``) beside the ideal ratio (front end + layers 1..k) / (front end + all layers)
  from per-layer timings (hooks) of full-depth runs; our full-depth encoder vs ESPnet's own encoder
  class with the same config and weights; and peak memory (CUDA: allocator peak; CPU: the
  process's peak resident set so far).
"""
import resource
import argparse
import copy
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional

import torch
import yaml

# The paper's model: 12 Conformer layers, d 256, ff 2048, kernel 31, 80-dim fbank, 4x conv2d
# subsampling, an exit every 2nd layer, BPE 256.
PAPER_CONFIG = dict(
    frontend="default",
    frontend_conf=dict(n_fft=512, win_length=400, hop_length=160, n_mels=80),
    normalize="utterance_mvn",
    encoder="eexit_conformer",
    encoder_conf=dict(
        output_size=256, attention_heads=4, linear_units=2048, num_blocks=12,
        dropout_rate=0.1, input_layer="conv2d", normalize_before=True, macaron_style=True,
        rel_pos_type="latest", pos_enc_layer_type="rel_pos", selfattention_layer_type="rel_selfattn",
        activation_type="swish", use_cnn_module=True, cnn_module_kernel=31,
        exit_layers=[2, 4, 6, 8, 10, 12],
    ),
    model="eexit",
    model_conf=dict(ctc_weight=1.0),
)


def build(config: dict, vocab_size: int, exit_layers: Optional[List[int]] = None):
    import espnet_eexit  # noqa: F401
    from espnet_eexit.tasks.asr import EarlyExitASRTask

    args = vars(EarlyExitASRTask.get_parser().parse_args([]))
    args.update(copy.deepcopy(config))
    args["token_list"] = ["<blank>", "<unk>"] + [f"t{i}" for i in range(vocab_size - 3)] + ["<sos/eos>"]
    args.setdefault("input_size", None)
    if exit_layers is not None:
        args["encoder_conf"] = {**args["encoder_conf"], "exit_layers": exit_layers}
    torch.manual_seed(0)
    return EarlyExitASRTask.build_model(argparse.Namespace(**args))


def median_time(fn: Callable[[], None], steps: int) -> float:
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def random_batch(batch_size: int, seconds: float, vocab_size: int, fs: int = 16000):
    g = torch.Generator().manual_seed(0)
    n = int(seconds * fs)
    speech = torch.randn(batch_size, n, generator=g) * 0.1
    lengths = torch.full((batch_size,), n, dtype=torch.long)
    n_tok = max(2, int(seconds * 7))  # ~7 BPE tokens per second of speech
    text = torch.randint(2, vocab_size - 1, (batch_size, n_tok), generator=g)
    return speech, lengths, text, torch.full((batch_size,), n_tok, dtype=torch.long)


def train_step_fn(model, batch):
    optim = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        optim.zero_grad()
        loss, _, _ = model(batch[0], batch[1], batch[2].clone(), batch[3])
        loss.backward()
        optim.step()

    return step


def main(cmd: Optional[list] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None, help="ESPnet ASR training YAML (default: paper's)")
    parser.add_argument("--vocab_size", type=int, default=256)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0, help="audio length per utterance")
    parser.add_argument("--steps", type=int, default=5, help="timed repetitions (after 1 warm-up)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no_train_step", action="store_true", help="skip the training-step timing")
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 8],
                        help="batch sizes of the encoder timings")
    parser.add_argument("--lengths", type=float, nargs="+", default=[5.0, 15.0],
                        help="audio lengths (s) of the encoder timings")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (encoder timings)")
    parser.add_argument("--whisper_model", default=None,
                        help="whisper_model of a Whisper config's encoder and decoder (e.g. its path "
                             "from where the benchmark runs)")
    args = parser.parse_args(cmd)
    torch.set_num_threads(args.threads)

    config = PAPER_CONFIG if args.config is None else yaml.safe_load(open(args.config))
    if args.whisper_model:
        for part in ("encoder_conf", "decoder_conf"):
            if "whisper_model" in (config.get(part) or {}):
                config[part]["whisper_model"] = args.whisper_model
    model = build(config, args.vocab_size)
    exits = model.exit_layers
    single = build(config, args.vocab_size, exit_layers=[exits[-1]])
    single.load_state_dict(model.state_dict(), strict=False)  # same weights for the shared part

    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    head = count(model.ctc) if model.ctc is not None else 0
    print(f"# device: cpu, {args.threads} threads; batch {args.batch_size} x {args.seconds:g} s; "
          f"vocab {args.vocab_size}; median of {args.steps}")
    print(f"parameters: total {count(model) / 1e6:.2f} M with {len(exits)} exits "
          f"(single-exit model: {count(single) / 1e6:.2f} M); encoder {count(model.encoder) / 1e6:.2f} M; "
          f"per CTC head {head / 1e6:.3f} M")

    if not args.no_train_step:
        batch = random_batch(args.batch_size, args.seconds, args.vocab_size)
        time_train_steps(model, single, batch, args.steps, len(exits))
    espnet_encoder = espnet_twin(model, config)
    device = torch.device(args.device)
    model.to(device), espnet_encoder.to(device)
    for batch_size in args.batch_sizes:
        for seconds in args.lengths:
            batch = random_batch(batch_size, seconds, args.vocab_size)
            print(f"\n## batch {batch_size} x {seconds:g} s, {args.device}")
            time_exits(model, espnet_encoder, [t.to(device) for t in batch], args.steps, device)


def espnet_twin(model, config):
    """ESPnet's own encoder class with the same configuration and weights as ``model.encoder``."""
    from espnet_eexit.registration import ENCODERS, load_class

    encoder = model.encoder
    if config["encoder"] == "eexit_whisper":
        return espnet_whisper_twin(encoder)
    ours = load_class(ENCODERS[config["encoder"]])
    espnet_cls = next(b for b in ours.__mro__[1:] if b.__module__.startswith("espnet2"))
    conf = {k: v for k, v in config.get("encoder_conf", {}).items()
            if k not in ("exit_layers", "exit_norm", "subsampling_channels")}
    input_size = model.frontend.output_size() if model.frontend is not None else config["input_size"]
    twin = espnet_cls(input_size, **conf)
    twin.embed = copy.deepcopy(encoder.embed)  # e.g. a narrow front end: compare like with like
    missing, unexpected = twin.load_state_dict(encoder.state_dict(), strict=False)
    assert not missing and all(k.startswith("exit_norms.") for k in unexpected), (missing, unexpected)
    return twin.eval()


# Hugging Face Whisper encoder names -> openai-whisper's (ESPnet's `encoder: whisper` runs the latter)
_OPENAI_NAMES = (("self_attn.q_proj", "attn.query"), ("self_attn.k_proj", "attn.key"),
                 ("self_attn.v_proj", "attn.value"), ("self_attn.out_proj", "attn.out"),
                 ("self_attn_layer_norm", "attn_ln"), ("fc1", "mlp.0"), ("fc2", "mlp.2"),
                 ("final_layer_norm", "mlp_ln"), ("layers.", "blocks."), ("layer_norm.", "ln_post."),
                 ("embed_positions.weight", "positional_embedding"))


def espnet_whisper_twin(encoder):
    """ESPnet's ``OpenAIWhisperEncoder`` on the weights of our ``eexit_whisper`` encoder.

    ESPnet's class loads a model only by OpenAI name (a download); here ``whisper.load_model``
    hands it an openai-whisper model holding our weights instead, so that the two encoders are
    timed on identical computations (ESPnet's: no padding mask).
    """
    from unittest import mock

    try:
        import whisper
        from whisper.model import ModelDimensions, Whisper
    except ImportError:
        raise SystemExit("benchmark: the comparison with ESPnet's whisper encoder needs the "
                         "openai-whisper package: pip install --no-deps openai-whisper && "
                         "pip install tiktoken numba more-itertools")
    from espnet2.asr.encoder.whisper_encoder import OpenAIWhisperEncoder

    cfg = encoder.whisper.config
    dims = ModelDimensions(n_mels=cfg.num_mel_bins, n_audio_ctx=cfg.max_source_positions,
                           n_audio_state=cfg.d_model, n_audio_head=cfg.encoder_attention_heads,
                           n_audio_layer=cfg.encoder_layers, n_vocab=cfg.vocab_size,
                           n_text_ctx=cfg.max_target_positions, n_text_state=cfg.d_model,
                           n_text_head=cfg.decoder_attention_heads, n_text_layer=cfg.decoder_layers)
    reference = Whisper(dims)
    state = {}
    for name, value in encoder.whisper.state_dict().items():
        for ours, theirs in _OPENAI_NAMES:
            name = name.replace(ours, theirs)
        state[name] = value
    missing, unexpected = reference.encoder.load_state_dict(state, strict=False)
    assert not unexpected and all(k.endswith("key.bias") for k in missing), (missing, unexpected)
    # (openai-whisper releases since 2023-11 lost the N_MELS constant ESPnet 202511 imports)
    with mock.patch.object(whisper, "available_models", lambda: ["ours"]), \
            mock.patch.object(whisper, "load_model", lambda *a, **k: reference), \
            mock.patch.object(whisper.audio, "N_MELS", cfg.num_mel_bins, create=True):
        twin = OpenAIWhisperEncoder(whisper_model="ours")
    return twin.eval()


def time_train_steps(model, single, batch, steps_n: int, num_exits: int) -> None:
    model.train(), single.train()
    steps: Dict[str, Callable[[], None]] = {
        f"{num_exits} exits": train_step_fn(model, batch),
        "1 exit": train_step_fn(single, batch),
    }
    for fn in steps.values():
        fn()  # warm-up (first steps of a process are slower)
    times = {name: [] for name in steps}
    for _ in range(steps_n):  # interleaved, so load changes hit both alike
        for name, fn in steps.items():
            times[name].append(median_time(fn, 1))
    t_multi, t_single = (statistics.median(times[n]) for n in steps)
    print(f"training step: {num_exits} exits {t_multi:.3f} s, 1 exit {t_single:.3f} s, "
          f"ratio {t_multi / t_single:.3f}")


def layer_times(encoder, feats, feat_lens, steps_n: int):
    """Median front-end time and per-layer times of full-depth runs (forward hooks)."""
    starts, per_layer = {}, {i: [] for i in range(len(encoder.encoders))}
    handles = []
    for i, layer in enumerate(encoder.encoders):
        handles.append(layer.register_forward_pre_hook(
            lambda m, inp, i=i: starts.__setitem__(i, time.perf_counter())))
        handles.append(layer.register_forward_hook(
            lambda m, inp, out, i=i: per_layer[i].append(time.perf_counter() - starts[i])))
    try:
        for _ in range(steps_n):
            encoder(feats, feat_lens)
    finally:
        for h in handles:
            h.remove()
    front = median_time(lambda: encoder.start(feats, feat_lens), steps_n)
    return front, [statistics.median(per_layer[i]) for i in sorted(per_layer)]


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_memory(device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB (CUDA allocator peak)"
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB (process peak RSS so far)"


def time_exits(model, espnet_encoder, batch, steps_n: int, device=torch.device("cpu")) -> None:
    exits = model.exit_layers
    model.eval()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with torch.no_grad():
        feats, feat_lens = model.encoder_input(batch[0], batch[1])

        def run(fn):
            def timed():
                fn()
                _sync(device)
            return timed

        ours_out = model.encoder(feats, feat_lens)[0]  # warm-up, and the two compute the same
        theirs_out = espnet_encoder(feats, feat_lens)[0]
        max_diff = float((ours_out - theirs_out).abs().max())
        # Every exit, ours at full depth and ESPnet's, interleaved round by round so that load
        # changes hit all alike; the per-layer timings (for the ideal ratio) likewise.
        per_exit = {k: [] for k in exits}
        ours, theirs, fronts, layer_runs = [], [], [], []
        for _ in range(steps_n):
            for k in exits:
                per_exit[k].append(median_time(
                    run(lambda k=k: model.encoder(feats, feat_lens, max_exit_layer=k)), 1))
            ours.append(median_time(run(lambda: model.encoder(feats, feat_lens)), 1))
            theirs.append(median_time(run(lambda: espnet_encoder(feats, feat_lens)), 1))
            front_1, layers_1 = layer_times(model.encoder, feats, feat_lens, 1)
            fronts.append(front_1)
            layer_runs.append(layers_1)
        enc_times = {k: statistics.median(v) for k, v in per_exit.items()}
        front = statistics.median(fronts)
        layers = [statistics.median(run_[i] for run_ in layer_runs) for i in range(len(layer_runs[0]))]
    full = enc_times[exits[-1]]
    total = front + sum(layers)
    print(f"front end (features, subsampling, positional encoding): {front:.4f} s = "
          f"{front / full:.3f} of the full-depth encoder")
    print(f"full depth: ours {statistics.median(ours):.4f} s, ESPnet's "
          f"{type(espnet_encoder).__name__} {statistics.median(theirs):.4f} s, ratio "
          f"{statistics.median(ours) / statistics.median(theirs):.3f}; outputs differ by at most "
          f"{max_diff:.1e} (magnitude {float(ours_out.abs().max()):.1f})")
    print("| exit k | k/L | time (s) | time / full | ideal (per-layer timings) | time / ideal |")
    print("|---|---|---|---|---|---|")
    num_layers = model.encoder.num_layers
    for k in exits:
        ideal = (front + sum(layers[:k])) / total
        ratio = enc_times[k] / full
        print(f"| {k} | {k / num_layers:.2f} | {enc_times[k]:.4f} | {ratio:.3f} | {ideal:.3f} | "
              f"{ratio / ideal:.3f} |")
    print(f"peak memory: {peak_memory(device)}")


if __name__ == "__main__":
    sys.exit(main())
