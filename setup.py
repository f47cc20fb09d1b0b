"""keras_cnas: constrained neural architecture search for TensorFlow/Keras with TFLite export."""

import pathlib

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).parent

setup(
    name="keras_cnas",
    version="0.1.0",
    description=(
        "Constrained neural architecture search for TensorFlow/Keras with "
        "verified TFLite export for phones and microcontrollers."
    ),
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["keras_cnas", "keras_cnas.*"]),
    install_requires=[
        # tf-keras pulls `tensorflow` anyway, so we do not use tensorflow-cpu.
        "tensorflow>=2.21,<2.22",
        # Keras 2 API: tensorflow-model-optimization 0.8.x does not work with Keras 3.
        "tf-keras>=2.21,<2.22",
        # tfmot pins absl-py~=1.2.
        "tensorflow-model-optimization==0.8.1",
        "absl-py",
        "numpy",
        "ai-edge-litert>=2.3,<3",
        # The default strategy (BayesOpt) fits scikit-learn's Gaussian process.
        "scikit-learn",
    ],
    extras_require={
        # Only dev builds of tflite-micro exist on PyPI: pin exactly.
        "micro": ["tflite-micro==0.dev20261023182759"],
        "ray": ["ray[tune]"],
        "examples": ["scikit-learn"],
        # strategies.TPE (--strategy=tpe): Optuna's TPE sampler through ask/tell.
        "tpe": ["optuna>=4,<7"],
        # tools/report.py's plots; tensorboard to view the event files a search writes.
        "plot": ["matplotlib", "tensorboard"],
        "gpu": ["tensorflow[and-cuda]>=2.21,<2.22"],
        # benchmarks/vs_kerastuner.py; KerasTuner does not start without tensorboard.
        "benchmark": ["keras-tuner>=1.4,<2", "tensorboard"],
        # The export tests measure TFLite Micro arenas with the real interpreter; the Ray
        # runner tests start a local Ray, the report tests render real PNGs; pytest-xdist
        # runs `make test` on every core.
        "test": ["pytest", "pytest-timeout", "pytest-xdist", "scikit-learn", "optuna>=4,<7",
                 "tflite-micro==0.dev20261023182759",
                 "ray", "matplotlib"],
    },
    classifiers=[
        "Programming Language :: Python :: 3.11",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
