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
    install_requires=["espnet>=202511", "torch>=2.0", "sentencepiece", "kaldiio", "PyYAML"],
    extras_require={"test": ["pytest"], "plot": ["matplotlib"], "onnx": ["onnx", "onnxruntime"]},
    license="Apache-2.0",
)
