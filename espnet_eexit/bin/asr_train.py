"""ESPnet's ``asr_train`` with the early-exit encoders and model registered.

    python -m espnet_eexit.bin.asr_train --config conf/train_asr_eexit_conformer.yaml ...

Every option of ``espnet2.bin.asr_train`` works (``--ngpu``, ``--multiprocessing_distributed``,
``--collect_stats``, ``--resume`` ...); ``encoder: eexit_conformer`` and ``model: eexit`` become
valid choices.
"""
from typing import List, Optional

from espnet_eexit.bin.cli import run_main
from espnet_eexit.tasks.asr import EarlyExitASRTask


def get_parser():
    return EarlyExitASRTask.get_parser()


def main(cmd: Optional[List[str]] = None) -> None:
    run_main(lambda c: EarlyExitASRTask.main(cmd=c), cmd)


if __name__ == "__main__":
    main()
