"""``EarlyExitSpeech2Text``: ESPnet's ``Speech2Text`` decoding from one exit of an early-exit model.

The encoder runs only up to the chosen exit; ESPnet's beam search (CTC prefix scorer, attention
decoder, LM, ...) then scores with that exit's own CTC head and decoder.
"""
from typing import Optional

from espnet2.bin.asr_inference import Speech2Text
from espnet.nets.scorers.ctc import CTCPrefixScorer

from espnet_eexit.errors import EarlyExitConfigError
from espnet_eexit.model import EarlyExitASRModel


class EarlyExitSpeech2Text(Speech2Text):
    """:class:`Speech2Text` with ``exit_layer``: decode from the exit after that layer.

    Args:
        exit_layer: a layer of the model's ``exit_layers``; ``None`` = the last exit.
        *args, **kwargs: as for :class:`Speech2Text`.
    """

    def __init__(self, *args, exit_layer: Optional[int] = None, **kwargs):
        super().__init__(*args, **kwargs)
        model = self.asr_model
        if not isinstance(model, EarlyExitASRModel):
            if exit_layer is not None:
                raise EarlyExitConfigError(
                    f"--exit_layer {exit_layer} needs a model trained with model: eexit "
                    f"(this one is {type(model).__name__})"
                )
            self.exit_layer = None
            return
        self.exit_layer = model.exit_layers[-1] if exit_layer is None else exit_layer
        model.encoder.check_exit_layer(self.exit_layer)
        model.inference_exit_layer = self.exit_layer
        self._score_with(model.ctc, model.ctc_for_exit(self.exit_layer),
                         model.decoder, model.decoder_for_exit(self.exit_layer))
        # Measure (not assume) how many encoder layers each utterance really costs.
        self.layers_computed = 0
        self.utterances = 0
        for layer in model.encoder.encoders:
            layer.register_forward_hook(self._count_layer)

    def _count_layer(self, *_) -> None:
        self.layers_computed += 1

    def __call__(self, speech):
        self.utterances += 1
        return super().__call__(speech)

    def exit_summary(self) -> str:
        """Text for ``<output_dir>/exit_info``: the exit and the encoder layers really computed."""
        encoder = self.asr_model.encoder
        per_utt = self.layers_computed / max(self.utterances, 1)
        return (
            f"exit_layer {self.exit_layer}\n"
            f"num_layers {encoder.num_layers}\n"
            f"utterances {self.utterances}\n"
            f"layers_computed_per_utterance {per_utt:.3f}\n"
            f"relative_depth {per_utt / encoder.num_layers:.3f}\n"
        )

    def _score_with(self, old_ctc, new_ctc, old_decoder, new_decoder) -> None:
        """Point the beam search's scorers (built for the last exit) at another exit's heads."""
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
