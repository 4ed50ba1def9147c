"""espnet-eexit: early-exit speech recognition as an ESPnet plugin."""
from setuptools import find_packages, setup

setup(
    name="espnet_eexit",
    version="0.1.0",
    description="Early-exit ASR (multi-exit Conformer/Transformer/E-Branchformer) for ESPnet",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["espnet_eexit", "espnet_eexit.*"]),
    python_requires=">=3.9",
    # espnet 202511 pins setuptools<74 while torch 2.13 needs >=77: tools/install.sh installs espnet
    # with --no-deps and resolves its requirements against the installed torch.
    # The torch-free runtime (policies, errors, the ONNX runtime) is its own distribution in runtime/:
    # install both from a checkout with `pip install ./runtime .` (tools/install.sh: editable).
    install_requires=["espnet-eexit-runtime==0.1.0", "espnet>=202511", "torch>=2.0", "sentencepiece",
                      "kaldiio", "PyYAML"],
    extras_require={"test": ["pytest"], "plot": ["matplotlib"], "onnx": ["onnx"]},
    license="Apache-2.0",
)
