"""Early-exit encoders: one mechanism (:mod:`.early_exit`), several ESPnet backbones."""
