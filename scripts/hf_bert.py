"""A tiny randomly initialised Hugging Face `FlaxBertModel` and the ways to save it.

Shared by scripts/gen_hf_fixtures.py (writes tests/fixtures/hf_bert/) and scripts/check_rust_hf.py
(checks directories written by the Rust crate). Nothing is downloaded: HF_HUB_OFFLINE=1 is set before
transformers is imported, and the model is built from a `BertConfig` made here.

  - `config()`        -> the tiny BertConfig (CONFIG);
  - `init_params()`   -> FlaxBertModel(config(), seed=SEED).params with every leaf offset by a small
                         deterministic amount (models.perturb_flat: numpy PCG64 seeded by crc32 of the key),
                         so that biases are not all zero and LayerNorm scales not all one;
  - `inputs()`        -> a fixed (input_ids, attention_mask) batch (int32);
  - `run(model, params)` -> {"last_hidden_state", "pooler_output"} as float32 numpy arrays;
  - `save(variant, dir, model)` -> writes one of VARIANTS into dir.

The variants (subdirectories of tests/fixtures/hf_bert/):
  msgpack              model.save_pretrained(dir): config.json + flax_model.msgpack
  safetensors          model.save_pretrained(dir, safe_serialization=True): config.json + model.safetensors
                       (__metadata__ {"format": "flax"}, keys joined with '.')
  msgpack_sharded      model.save_pretrained(dir, max_shard_size=MAX_SHARD_SIZE): config.json,
                       flax_model-0000i-of-0000N.msgpack, flax_model.msgpack.index.json (keys joined with '/')
  safetensors_sharded  transformers 4.57.6 has no Flax writer for it (save_pretrained(safe_serialization=True,
                       max_shard_size=...) writes msgpack shards) and FlaxBertModel.from_pretrained raises
                       NotImplementedError on it. It is written here as the rest of the HF ecosystem writes it
                       (huggingface_hub's split_state_dict_into_shards_factory, the splitter transformers'
                       PyTorch save_pretrained uses): model-0000i-of-0000N.safetensors (each with
                       __metadata__ {"format": "flax"}), model.safetensors.index.json =
                       json.dumps({"metadata": {"total_size": S}, "weight_map": {key: file}}, indent=2,
                       sort_keys=True) + "\\n", over the '.'-joined keys in ascending order.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import json  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Dict  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import models  # noqa: E402

import safetensors.flax  # noqa: E402
from flax.traverse_util import flatten_dict, unflatten_dict  # noqa: E402
from huggingface_hub import split_state_dict_into_shards_factory  # noqa: E402

# transformers warns once that its TensorFlow and JAX classes are deprecated (removed in 5.x).
warnings.filterwarnings("ignore", message=".*TensorFlow and JAX classes are deprecated.*")
import transformers  # noqa: E402
from transformers import BertConfig, FlaxBertModel  # noqa: E402
from transformers.utils import (  # noqa: E402
    FLAX_WEIGHTS_INDEX_NAME,
    FLAX_WEIGHTS_NAME,
    SAFE_WEIGHTS_INDEX_NAME,
    SAFE_WEIGHTS_NAME,
)

transformers.logging.set_verbosity_error()

SEED = 0
CONFIG = dict(
    vocab_size=64,
    hidden_size=8,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=16,
    max_position_embeddings=16,
)
# Bytes of tensor data per shard: 4 shards of the 7776 B of params, no tensor on its own
# (word_embeddings, the largest, is 2048 B).
MAX_SHARD_SIZE = 2500
SAFE_WEIGHTS_PATTERN = "model{suffix}.safetensors"  # huggingface_hub.constants.SAFETENSORS_WEIGHTS_FILE_PATTERN
SAFETENSORS_METADATA = {"format": "flax"}
VARIANTS = ["msgpack", "safetensors", "msgpack_sharded", "safetensors_sharded"]
TOLERANCE = 1e-5

assert SAFE_WEIGHTS_NAME == SAFE_WEIGHTS_PATTERN.format(suffix="")
assert SAFE_WEIGHTS_INDEX_NAME == SAFE_WEIGHTS_NAME + ".index.json"


def config() -> BertConfig:
    return BertConfig(**CONFIG)


def flat_keys(params, sep: str = ".") -> Dict[str, np.ndarray]:
    """{'embeddings.word_embeddings.embedding': array, ...} in the params tree order."""
    return {k: np.asarray(v) for k, v in flatten_dict(params, sep=sep).items()}


def init_params() -> dict:
    params = FlaxBertModel(config(), seed=SEED).params
    flat = flatten_dict(params, sep=".")
    return unflatten_dict(models.perturb_flat(flat, lambda k: True, scale=0.1), sep=".")


def make_model() -> FlaxBertModel:
    model = FlaxBertModel(config(), seed=SEED)
    model.params = init_params()
    return model


def inputs() -> Dict[str, np.ndarray]:
    """Two sequences of 6 tokens, the second padded (token 0 = pad_token_id, attention 0) after 3."""
    return {
        "input_ids": np.array([[5, 17, 33, 2, 61, 9], [1, 44, 8, 0, 0, 0]], dtype=np.int32),
        "attention_mask": np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]], dtype=np.int32),
    }


def run(model: FlaxBertModel, params=None) -> Dict[str, np.ndarray]:
    x = inputs()
    out = model(x["input_ids"], attention_mask=x["attention_mask"], params=params, train=False)
    return {
        "last_hidden_state": np.asarray(out.last_hidden_state, np.float32),
        "pooler_output": np.asarray(out.pooler_output, np.float32),
    }


def index_text(index: dict) -> str:
    """An index JSON as transformers writes it (modeling_utils / modeling_flax_utils / modeling_tf_utils)."""
    return json.dumps(index, indent=2, sort_keys=True) + "\n"


def save_sharded_safetensors(directory: Path, params, max_shard_size=MAX_SHARD_SIZE) -> dict:
    """Sharded safetensors of the Flax params, as huggingface_hub / transformers (PyTorch side) shard them;
    returns the index."""
    flat = flat_keys(params)
    state = {k: flat[k] for k in sorted(flat)}
    split = split_state_dict_into_shards_factory(
        state, get_storage_size=lambda a: a.nbytes, filename_pattern=SAFE_WEIGHTS_PATTERN,
        max_shard_size=max_shard_size,
    )
    assert split.is_sharded, "max_shard_size too large to shard"
    for filename, keys in split.filename_to_tensors.items():
        safetensors.flax.save_file({k: state[k] for k in keys}, str(directory / filename),
                                   metadata=SAFETENSORS_METADATA)
    index = {"metadata": split.metadata, "weight_map": split.tensor_to_filename}
    (directory / SAFE_WEIGHTS_INDEX_NAME).write_text(index_text(index))
    return index


def save(variant: str, directory: Path, model: FlaxBertModel) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    if variant == "msgpack":
        model.save_pretrained(directory)
    elif variant == "safetensors":
        model.save_pretrained(directory, safe_serialization=True)
    elif variant == "msgpack_sharded":
        model.save_pretrained(directory, max_shard_size=MAX_SHARD_SIZE)
    elif variant == "safetensors_sharded":
        model.config.architectures = [type(model).__name__[len("Flax"):]]  # as save_pretrained does
        model.config.save_pretrained(directory)
        save_sharded_safetensors(directory, model.params)
    else:
        raise ValueError(f"unknown variant {variant!r}; known: {VARIANTS}")


__all__ = [
    "BertConfig", "FlaxBertModel", "FLAX_WEIGHTS_NAME", "FLAX_WEIGHTS_INDEX_NAME", "SAFE_WEIGHTS_NAME",
    "SAFE_WEIGHTS_INDEX_NAME",
]
