"""editable: Editable Neural Networks (Sinitsin et al., ICLR 2020) for PyTorch and fairseq.

Install with ``bash scripts/install.sh`` (or ``make install``): it pins the versions in requirements.txt and
installs fairseq (``ve-fairseq==0.12.3``) without its torchaudio requirement, which fairseq's translation
code never imports.
"""
from setuptools import find_packages, setup

setup(
    name="editable",
    version="0.1.0",
    description="Editable Neural Networks: differentiable model editing and Editable Training",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.11",
    packages=find_packages(include=["editable_core", "editable_core.*", "editable_vision", "editable_vision.*",
                                    "editable_fairseq", "editable_fairseq.*"]),
    install_requires=[
        "torch==2.14.1",
        "numpy>=1.26",
    ],
    extras_require={
        "vision": ["torchvision==0.29.1", "scikit-learn>=1.3", "tqdm>=4.60", "matplotlib>=3.7"],
        # fairseq itself: `pip install --no-deps ve-fairseq==0.12.3` (see scripts/install.sh)
        "fairseq": ["hydra-core>=1.3.2", "omegaconf>=2.3", "bitarray", "regex", "cffi", "cython", "packaging",
                    "scikit-learn", "tqdm", "sacrebleu>=2.3", "sacremoses>=0.1", "subword-nmt>=0.3.8",
                    "tensorboardX"],
        "test": ["pytest>=7"],
    },
    entry_points={"console_scripts": [
        "editable-fairseq-prepare-corpus = editable_fairseq.prepare.corpus:main",
        "editable-fairseq-make-edits = editable_fairseq.cli.make_edits:main",
        "editable-fairseq-evaluate = editable_fairseq.cli.evaluate:main",
        "editable-fairseq-patch = editable_fairseq.cli.patch:main",
    ]},
)
