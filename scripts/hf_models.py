"""Tiny randomly initialised Hugging Face Flax models and the ways to save them.

Shared by scripts/gen_hf_fixtures.py (writes tests/fixtures/hf_<name>/), scripts/check_rust_hf.py (checks
directories written by the Rust crate) and scripts/hf_pytorch.py (the Flax -> PyTorch facts). Nothing is
downloaded: HF_HUB_OFFLINE=1 is set before transformers is imported, and every model is built from a config
made here.

`MODELS` maps a name to an `HfModel`:
  bert    FlaxBertModel                     encoder (the first fixture)
  gpt2    FlaxGPT2LMHeadModel               decoder-only; `Conv1D` kernels stored [out, in]; lm_head tied to wte
  llama   FlaxLlamaForCausalLM              decoder-only; RMSNorm `weight`, grouped-query attention, untied lm_head
  t5      FlaxT5ForConditionalGeneration    encoder-decoder; relative attention bias; embeddings tied (T5Config's
                                            default tie_word_embeddings=True: no lm_head, logits scaled by
                                            d_model**-0.5)
  vit     FlaxViTModel                      vision; a 4x4 patch-embedding convolution (HWIO kernel)
  resnet  FlaxResNetForImageClassification  vision with BatchNorm: params under `params`, running statistics
                                            under `batch_stats` (`mean`, `var`)
and for each:
  - `config()`           -> the tiny config (`config_class(**config_kwargs)`);
  - `init_params()`      -> `flax_class(config(), seed=SEED).params` with every leaf offset by a small
                            deterministic amount (models.perturb_flat: numpy PCG64 seeded by crc32 of the
                            '.'-joined key, scale 0.1), so that biases are not all zero, norm scales not all one,
                            and BatchNorm means not all zero;
  - `make_model()`       -> the Flax model holding those params;
  - `inputs()`           -> fixed inputs, the keyword arguments of the model's call (int32 ids and masks;
                            float32 pixel values in NCHW, the layout the Flax models' `__call__` takes: it
                            transposes to NHWC itself);
  - `run(model, params)` -> the recorded outputs as float32 numpy arrays.
`save(variant, dir, model, max_shard_size)` writes one of VARIANTS into dir:
  msgpack              model.save_pretrained(dir): config.json + flax_model.msgpack
  safetensors          model.save_pretrained(dir, safe_serialization=True): config.json + model.safetensors
                       (__metadata__ {"format": "flax"}, keys joined with '.')
  msgpack_sharded      model.save_pretrained(dir, max_shard_size=model's max_shard_size): config.json,
                       flax_model-0000i-of-0000N.msgpack, flax_model.msgpack.index.json (keys joined with '/')
  safetensors_sharded  transformers 4.57.6 has no Flax writer for it (save_pretrained(safe_serialization=True,
                       max_shard_size=...) writes msgpack shards) and from_pretrained raises
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
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable, Dict, Tuple  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import models  # noqa: E402

import jax.numpy as jnp  # noqa: E402
import safetensors.flax  # noqa: E402
from flax.traverse_util import flatten_dict, unflatten_dict  # noqa: E402
from huggingface_hub import split_state_dict_into_shards_factory  # noqa: E402

# transformers warns once that its TensorFlow and JAX classes are deprecated (removed in 5.x).
warnings.filterwarnings("ignore", message=".*TensorFlow and JAX classes are deprecated.*")
import transformers  # noqa: E402
from transformers.utils import (  # noqa: E402
    FLAX_WEIGHTS_INDEX_NAME,
    FLAX_WEIGHTS_NAME,
    SAFE_WEIGHTS_INDEX_NAME,
    SAFE_WEIGHTS_NAME,
)

transformers.logging.set_verbosity_error()


def _clip_with_old_keywords(clip):
    """jax 0.10 removed `jnp.clip`'s `a_min`/`a_max` keywords (renamed `min`/`max` in jax 0.4.27);
    FlaxT5's `_relative_position_bucket` still calls `jnp.clip(x, a_max=num_buckets - 1)`."""

    def patched(arr=None, min=None, max=None, *, a_min=None, a_max=None):  # noqa: A002 - jnp's own names
        return clip(arr, min if a_min is None else a_min, max if a_max is None else a_max)

    patched.accepts_a_min_a_max = True
    return patched


if not getattr(jnp.clip, "accepts_a_min_a_max", False):
    jnp.clip = _clip_with_old_keywords(jnp.clip)

SEED = 0
PERTURB_SCALE = 0.1
SAFE_WEIGHTS_PATTERN = "model{suffix}.safetensors"  # huggingface_hub.constants.SAFETENSORS_WEIGHTS_FILE_PATTERN
SAFETENSORS_METADATA = {"format": "flax"}
VARIANTS = ["msgpack", "safetensors", "msgpack_sharded", "safetensors_sharded"]
TOLERANCE = 1e-5

assert SAFE_WEIGHTS_NAME == SAFE_WEIGHTS_PATTERN.format(suffix="")
assert SAFE_WEIGHTS_INDEX_NAME == SAFE_WEIGHTS_NAME + ".index.json"

Arrays = Dict[str, np.ndarray]


def _ids(rows) -> np.ndarray:
    return np.array(rows, dtype=np.int32)


def _text_inputs() -> Arrays:
    """Two sequences of 6 tokens, the second padded (token 0 = pad_token_id, attention 0) after 3."""
    return {
        "input_ids": _ids([[5, 17, 33, 2, 61, 9], [1, 44, 8, 0, 0, 0]]),
        "attention_mask": _ids([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]]),
    }


def _seq2seq_inputs() -> Arrays:
    """The text inputs, and decoder inputs that start with decoder_start_token_id (0) as T5's shift does;
    the second is padded after 3."""
    return {
        **_text_inputs(),
        "decoder_input_ids": _ids([[0, 12, 40, 7], [0, 3, 58, 0]]),
        "decoder_attention_mask": _ids([[1, 1, 1, 1], [1, 1, 1, 0]]),
    }


def _pixel_inputs(size: int) -> Callable[[], Arrays]:
    def pixels() -> Arrays:
        return {"pixel_values": models.det_input((2, 3, size, size))}  # NCHW, as the Flax __call__ takes it

    return pixels


@dataclass(frozen=True)
class HfModel:
    name: str
    config_class: str  # in transformers
    flax_class: str  # in transformers
    config_kwargs: dict
    # Bytes of tensor data per msgpack / safetensors shard: several shards, no tensor on its own.
    max_shard_size: int
    inputs: Callable[[], Arrays]
    outputs: Tuple[str, ...]  # attributes of the model's output recorded in expected.json
    notes: str = ""

    @property
    def flax_cls(self):
        return getattr(transformers, self.flax_class)

    @property
    def pytorch_class(self) -> str:
        """The PyTorch class transformers pairs with the Flax one (load_flax_checkpoint_in_pytorch_model:
        `getattr(transformers, "Flax" + model.__class__.__name__)`)."""
        return self.flax_class[len("Flax"):]

    @property
    def pixel_inputs(self) -> bool:
        return "pixel_values" in self.inputs()

    def config(self):
        return getattr(transformers, self.config_class)(**self.config_kwargs)

    def init_params(self) -> dict:
        flat = flatten_dict(self.flax_cls(self.config(), seed=SEED).params, sep=".")
        return unflatten_dict(models.perturb_flat(flat, lambda k: True, scale=PERTURB_SCALE), sep=".")

    def make_model(self):
        model = self.flax_cls(self.config(), seed=SEED)
        model.params = self.init_params()
        return model

    def run(self, model, params=None) -> Arrays:
        out = model(**self.inputs(), params=params, train=False)
        return {k: np.asarray(getattr(out, k), np.float32) for k in self.outputs}

    def call_text(self) -> str:
        """How the model is called, for expected.json's description."""
        first, *rest = self.inputs()
        return ", ".join([first] + [f"{k}={k}" for k in rest])


MODELS: Dict[str, HfModel] = {m.name: m for m in [
    HfModel(
        "bert", "BertConfig", "FlaxBertModel",
        dict(vocab_size=64, hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=16,
             max_position_embeddings=16),
        # 4 shards of the 7776 B of params (word_embeddings, the largest, is 2048 B).
        max_shard_size=2500, inputs=_text_inputs, outputs=("last_hidden_state", "pooler_output"),
    ),
    HfModel(
        "gpt2", "GPT2Config", "FlaxGPT2LMHeadModel",
        dict(vocab_size=64, n_positions=16, n_embd=8, n_layer=2, n_head=2),
        max_shard_size=2600, inputs=_text_inputs, outputs=("logits",),
        notes="FlaxConv1D kernels (attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj) are stored [out, in] and "
              "transposed when applied; lm_head is transformer.wte.embedding transposed (tie_word_embeddings)",
    ),
    HfModel(
        "llama", "LlamaConfig", "FlaxLlamaForCausalLM",
        dict(vocab_size=64, hidden_size=8, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2,
             num_key_value_heads=1, max_position_embeddings=16),
        max_shard_size=2600, inputs=_text_inputs, outputs=("logits",),
        notes="grouped-query attention (num_key_value_heads=1: k_proj/v_proj kernels [8, 4]); RMSNorm params "
              "are named `weight`; lm_head.kernel untied",
    ),
    HfModel(
        "t5", "T5Config", "FlaxT5ForConditionalGeneration",
        dict(vocab_size=64, d_model=8, d_kv=4, d_ff=16, num_layers=2, num_decoder_layers=2, num_heads=2,
             relative_attention_num_buckets=8, relative_attention_max_distance=16),
        max_shard_size=3600, inputs=_seq2seq_inputs, outputs=("logits", "encoder_last_hidden_state"),
        notes="tie_word_embeddings=True (T5Config's default): no lm_head, logits = (decoder output * "
              "d_model**-0.5) @ shared.embedding.T; relative_attention_bias only in block 0 of each stack; "
              "T5LayerNorm params are named `weight`",
    ),
    HfModel(
        "vit", "ViTConfig", "FlaxViTModel",
        dict(image_size=8, patch_size=4, num_channels=3, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
             intermediate_size=16),
        max_shard_size=2000, inputs=_pixel_inputs(8), outputs=("last_hidden_state", "pooler_output"),
        notes="embeddings.patch_embeddings.projection is an nn.Conv with a [4, 4, 3, 8] HWIO kernel; "
              "cls_token and position_embeddings are plain params (no kernel/scale/embedding leaf name)",
    ),
    HfModel(
        "resnet", "ResNetConfig", "FlaxResNetForImageClassification",
        dict(num_channels=3, embedding_size=4, hidden_sizes=[8, 16], depths=[1, 1], layer_type="bottleneck",
             num_labels=4),
        max_shard_size=2400, inputs=_pixel_inputs(16), outputs=("logits",),
        notes="layer_type='bottleneck' (ResNet-50's): FlaxResNetBottleNeckLayerCollection names its convolutions "
              "'0', '1', '2' as PyTorch's nn.Sequential does; params under `params`, BatchNorm running "
              "statistics under `batch_stats` (`mean`, `var`); the forward pass uses the running statistics "
              "(train=False)",
    ),
]}


LOADS = "loads: params exact, outputs match"


def load_outcome(m: HfModel, directory: Path, params: Arrays, outputs: Arrays) -> str:
    """What `m.flax_cls.from_pretrained(directory)` does: its error (the directory's path shown as <dir>),
    or whether its params are exactly `params` and its outputs `outputs` (within TOLERANCE)."""
    try:
        loaded = m.flax_cls.from_pretrained(directory)
    except (OSError, NotImplementedError, ValueError) as e:
        return f"{type(e).__name__}: {e}".replace(str(directory), "<dir>")
    got = flat_keys(loaded.params)
    differ = [k for k, w in params.items()
              if k not in got or got[k].shape != w.shape or got[k].tobytes() != w.tobytes()]
    if differ:
        return f"loads without an error, but {len(differ)} of {len(params)} params are not the file's (random init)"
    outs = m.run(loaded)
    ok = all(np.allclose(outs[k], w, rtol=TOLERANCE, atol=TOLERANCE) for k, w in outputs.items())
    return LOADS if ok else "loads: params exact, but outputs DIFFER"


def flat_keys(params, sep: str = ".") -> Arrays:
    """{'embeddings.word_embeddings.embedding': array, ...} in the params tree order."""
    return {k: np.asarray(v) for k, v in flatten_dict(params, sep=sep).items()}


def index_text(index: dict) -> str:
    """An index JSON as transformers writes it (modeling_utils / modeling_flax_utils / modeling_tf_utils)."""
    return json.dumps(index, indent=2, sort_keys=True) + "\n"


def save_sharded_safetensors(directory: Path, flat: Arrays, max_shard_size: int,
                             metadata: dict = SAFETENSORS_METADATA) -> dict:
    """Sharded safetensors of a flat {key: array}, as huggingface_hub / transformers (PyTorch side) shard
    them; returns the index."""
    state = {k: flat[k] for k in sorted(flat)}
    split = split_state_dict_into_shards_factory(
        state, get_storage_size=lambda a: a.nbytes, filename_pattern=SAFE_WEIGHTS_PATTERN,
        max_shard_size=max_shard_size,
    )
    assert split.is_sharded, "max_shard_size too large to shard"
    for filename, keys in split.filename_to_tensors.items():
        safetensors.flax.save_file({k: state[k] for k in keys}, str(directory / filename), metadata=metadata)
    index = {"metadata": split.metadata, "weight_map": split.tensor_to_filename}
    (directory / SAFE_WEIGHTS_INDEX_NAME).write_text(index_text(index))
    return index


def save(variant: str, directory: Path, model, max_shard_size: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    if variant == "msgpack":
        model.save_pretrained(directory)
    elif variant == "safetensors":
        model.save_pretrained(directory, safe_serialization=True)
    elif variant == "msgpack_sharded":
        model.save_pretrained(directory, max_shard_size=max_shard_size)
    elif variant == "safetensors_sharded":
        model.config.architectures = [type(model).__name__[len("Flax"):]]  # as save_pretrained does
        model.config.save_pretrained(directory)
        save_sharded_safetensors(directory, flat_keys(model.params), max_shard_size)
    else:
        raise ValueError(f"unknown variant {variant!r}; known: {VARIANTS}")


__all__ = [
    "MODELS", "HfModel", "LOADS", "load_outcome", "FLAX_WEIGHTS_NAME", "FLAX_WEIGHTS_INDEX_NAME", "SAFE_WEIGHTS_NAME",
    "SAFE_WEIGHTS_INDEX_NAME",
]
