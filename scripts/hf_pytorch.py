"""What transformers 4.57.6 does to a Flax checkpoint to make it a PyTorch one, found without torch.

transformers' Flax -> PyTorch conversion is `load_flax_weights_in_pytorch_model(pt_model, flax_state)` in
`transformers/modeling_flax_pytorch_utils.py`; it needs a PyTorch model (its `state_dict()` names and
shapes), and torch is not installed here (its wheel is a 3 GB CUDA build). So:

  - `to_pytorch(flax_flat, has_batch_stats)` applies that function's renaming and reshaping rules by hand
    (the rules are RULES, each quoted from the source by `quote`), assuming the PyTorch model has no key
    ending in `kernel` (none of the six models' PyTorch classes has one); it records per key the PyTorch
    name, shape, the axis permutation and the rule taken;
  - `run_transformers(flax_state, pt_shapes, ...)` runs transformers' own `load_flax_weights_in_pytorch_model`
    against a stand-in PyTorch model whose `state_dict()` holds the given names and shapes, with a stand-in
    `torch` module (only `torch.from_numpy`, returning the array) placed in sys.modules for the call alone;
    it reports what the function loaded (name -> array), the keys it called unexpected and missing (from its
    own warnings), or the ValueError it raised. With the names `to_pytorch` derived, this checks the
    by-hand rules against transformers' code; with the names a real PyTorch module has (`DEMOS`), it shows
    where the rules go wrong;
  - `check_with_pytorch_loader(hf_model, converted)` writes the converted tensors as a PyTorch checkpoint
    (`model.safetensors`, __metadata__ {"format": "pt"}) and loads it with the Flax class's
    `from_pretrained`, which sends it through transformers' PyTorch -> Flax rules
    (`rename_key_and_reshape_tensor`, the inverse direction, written for real PyTorch checkpoints; it needs no
    torch for safetensors) and compares shapes with the Flax model's: it must give back the Flax params exactly;
  - `pytorch_source_facts(hf_model)` reads (as text, with `ast`) the PyTorch class's own module
    (`transformers/models/<arch>/modeling_<arch>.py`): `base_model_prefix`, `_tied_weights_keys` and the
    buffers it registers, for the names a PyTorch `state_dict()` has that no Flax leaf gives.
What needs torch to know is marked as such (`needs_torch`).
"""

from __future__ import annotations

import ast
import contextlib
import logging
import re
import sys
import tempfile
import types
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hf_models  # noqa: E402  (sets HF_HUB_OFFLINE=1 before transformers is imported)

import safetensors.numpy  # noqa: E402
import transformers  # noqa: E402
import transformers.modeling_flax_pytorch_utils as flax_pytorch_utils  # noqa: E402
from flax.traverse_util import unflatten_dict  # noqa: E402

TRANSFORMERS_DIR = Path(transformers.__file__).parent
UTILS_FILE = Path(flax_pytorch_utils.__file__)
MODELING_UTILS_FILE = TRANSFORMERS_DIR / "modeling_utils.py"
MODELING_FLAX_UTILS_FILE = TRANSFORMERS_DIR / "modeling_flax_utils.py"
PT_METADATA = {"format": "pt"}
LOGGER_NAME = flax_pytorch_utils.__name__


def _line_number(path: Path, text: str, start: int = 0) -> int:
    """The 0-based index of the line of `path` containing `text`: the only one if start == 0, else the
    first at or after `start`."""
    lines = path.read_text().splitlines()
    hits = [i for i in range(start, len(lines)) if text in lines[i]]
    if not hits or (start == 0 and len(hits) != 1):
        raise AssertionError(f"{path.name}: {len(hits)} lines contain {text!r}")
    return hits[0]


def _cite(path: Path, i: int) -> str:
    return f"{path.relative_to(TRANSFORMERS_DIR.parent)}:{i + 1}: {path.read_text().splitlines()[i].strip()}"


def quote(path: Path, text: str) -> str:
    """'transformers/<file>:<line>: <the line>' for the one line of `path` that contains `text`."""
    return _cite(path, _line_number(path, text))


def quotes(path: Path, *texts: str) -> List[str]:
    return [quote(path, t) for t in texts]


def quote_after(path: Path, anchor: str, *texts: str) -> str:
    """The line found by looking for each of `texts` in turn, each after the line the one before found,
    starting after the one line containing `anchor`."""
    i = _line_number(path, anchor)
    for text in texts:
        i = _line_number(path, text, i + 1)
    return _cite(path, i)


def _rules(path: Path, table) -> Dict[str, dict]:
    """{name: {"doc", "source": the quoted lines}} from (name, doc, texts of the lines in `path`) rows."""
    return {name: {"doc": doc, "source": quotes(path, *texts)} for name, doc, texts in table}


# The Flax -> PyTorch rules of load_flax_weights_in_pytorch_model, in the order its if/elif chain tries them.
RULES = _rules(UTILS_FILE, [
    ("conv", "a 4-D `kernel` (not itself a PyTorch key) becomes `weight`, HWIO permuted to OIHW",
     ['if flax_key_tuple[-1] == "kernel" and flax_tensor.ndim == 4 and ".".join(flax_key_tuple) not',
      "flax_tensor = jnp.transpose(flax_tensor, (3, 2, 0, 1))"]),
    ("linear", "any other `kernel` becomes `weight`, transposed with numpy's `.T` (which reverses ALL axes)",
     ['elif flax_key_tuple[-1] == "kernel" and ".".join(flax_key_tuple) not in pt_model_dict:',
      "flax_tensor = flax_tensor.T"]),
    ("weight", "`scale` (a norm) and `embedding` (an embedding) become `weight`, unchanged",
     ['elif flax_key_tuple[-1] in ["scale", "embedding"]:']),
    ("running_mean", "a last name that CONTAINS 'mean' becomes `running_mean`, unchanged",
     ['elif "mean" in flax_key_tuple[-1]:', 'flax_key_tuple = flax_key_tuple[:-1] + ("running_mean",)']),
    ("running_var", "a last name that CONTAINS 'var' becomes `running_var`, unchanged",
     ['elif "var" in flax_key_tuple[-1]:', 'flax_key_tuple = flax_key_tuple[:-1] + ("running_var",)']),
    ("unchanged", "any other leaf keeps its name and layout (biases, T5/Llama norm `weight`s, ViT's cls_token and "
                  "position_embeddings)", []),
])
ROOT_RULE = _rules(UTILS_FILE, [
    ("root", "when the state has a `batch_stats` root, the FIRST name of EVERY key is dropped (`params.` or "
             "`batch_stats.`); otherwise keys are kept whole",
     ['if "batch_stats" in flax_state:', 'flax_key = ".".join(flax_key_tuple[1:])  # Remove the params/batch_stats']),
])["root"]

# Everything else load_flax_weights_in_pytorch_model and its callers do, quoted for the report.
OTHER_RULES = {
    **_rules(UTILS_FILE, [
        ("bf16_to_f32", "if any leaf is bfloat16, EVERY bfloat16 leaf is cast to float32 first",
         ["if any(is_type_bf16):",
          "lambda params: params.astype(np.float32) if params.dtype == jnp.bfloat16 else params"]),
        ("base_model_prefix",
         "base model <-> model with head: the prefix (e.g. `bert`) is dropped or added; it is added only when the "
         "PREFIXED FLAX name (still `kernel`, `scale`, `embedding`) is a PyTorch key, so only leaves whose names "
         "need no renaming (biases) get it; with a `batch_stats` root the test looks at `params` / `batch_stats`, "
         "never at the prefix",
         ["load_model_with_head_into_base_model = (pt_model.base_model_prefix in flax_state) and (",
          "load_base_model_into_model_with_head = (pt_model.base_model_prefix not in flax_state) and (",
          'require_base_model_prefix = ".".join((pt_model.base_model_prefix,) + flax_key_tuple) in pt_model_dict',
          "flax_key_tuple = (pt_model.base_model_prefix,) + flax_key_tuple"]),
        ("weight_norm",
         "PyTorch `parametrizations.<name>.original0/1` keys are matched by Flax `<name>_g` / `<name>_v`",
         ['if key_components[-3::2] == ["parametrizations", "original0"]:', 'name = key_components[-2] + "_g"']),
        ("shape_check",
         "a renamed key that the PyTorch model has must have its shape, else ValueError; a key it lacks is only "
         "logged as unexpected, a key it has that the checkpoint lacks only logged as missing (newly initialised)",
         ["if flax_tensor.shape != pt_model_dict[flax_key].shape:", "unexpected_keys.append(flax_key)",
          "pt_model.load_state_dict(pt_model_dict)"]),
        ("pytorch_to_flax",
         "the inverse direction (rename_key_and_reshape_tensor): PyTorch `weight` -> `scale` / `embedding` when the "
         "Flax model has that key, a 4-D `weight` -> `kernel` transposed (2, 3, 1, 0), any other `weight` -> "
         "`kernel` with `.T`; `running_mean`/`running_var` -> `mean`/`var`",
         ['if pt_tuple_key[-1] in ["weight", "gamma"] and is_key_or_prefix_key_in_dict(',
          'if pt_tuple_key[-1] == "running_mean" and not is_key_or_prefix_key_in_dict(pt_tuple_key):',
          "pt_tensor = pt_tensor.transpose(2, 3, 1, 0)", "pt_tensor = pt_tensor.T"]),
    ]),
    **_rules(MODELING_UTILS_FILE, [
        ("single_file_only",
         "PyTorch from_pretrained(from_flax=True) looks for flax_model.msgpack only (never the msgpack index), and "
         "converts only the FIRST checkpoint file: of sharded safetensors with format 'flax', the first shard",
         ["# Load from a Flax checkpoint in priority if from_flax", 'elif metadata.get("format") == "flax":',
          "model = load_flax_checkpoint_in_pytorch_model(model, checkpoint_files[0])"]),
    ]),
    **_rules(MODELING_FLAX_UTILS_FILE, [
        ("flax_safetensors_metadata",
         "Flax from_pretrained refuses a model.safetensors whose __metadata__ has no format 'pt', 'tf' or 'flax'; "
         "format 'pt' sends it through the PyTorch -> Flax rules",
         ['if safetensors_metadata is None or safetensors_metadata.get("format") not in ["pt", "tf", "flax"]:',
          'f"The safetensors archive passed at {resolved_archive_file} does not contain the valid metadata."',
          'safetensors_from_pt = safetensors_metadata.get("format") == "pt"']),
        ("flax_sharded_safetensors", "Flax from_pretrained raises NotImplementedError on sharded safetensors",
         ['raise NotImplementedError("Support for sharded checkpoints using safetensors is coming soon!")']),
    ]),
}


def rule_of(name: str, ndim: int) -> str:
    """The rule load_flax_weights_in_pytorch_model applies to a leaf `name` of `ndim` axes (no PyTorch key
    ending in `kernel` assumed)."""
    if name == "kernel":
        return "conv" if ndim == 4 else "linear"
    if name in ("scale", "embedding"):
        return "weight"
    if "mean" in name:
        return "running_mean"
    if "var" in name:
        return "running_var"
    return "unchanged"


NEW_LAST_NAME = {"conv": "weight", "linear": "weight", "weight": "weight", "running_mean": "running_mean",
                 "running_var": "running_var"}


def permutation_of(rule: str, ndim: int) -> Optional[List[int]]:
    if rule == "conv":
        return [3, 2, 0, 1]
    if rule == "linear":
        return list(range(ndim))[::-1]  # numpy .T
    return None


def to_pytorch(flax_flat: Dict[str, np.ndarray], has_batch_stats: bool) -> Dict[str, dict]:
    """{flax key ('.'-joined, roots included): {"pytorch", "shape", "flax_shape", "permutation", "rule",
    "array"}} by the rules of load_flax_weights_in_pytorch_model, in the Flax key order."""
    out = {}
    for key, arr in flax_flat.items():
        parts = key.split(".")
        rule = rule_of(parts[-1], arr.ndim)
        if rule in NEW_LAST_NAME:
            parts[-1] = NEW_LAST_NAME[rule]
        if has_batch_stats:
            parts = parts[1:]
        perm = permutation_of(rule, arr.ndim)
        converted = np.ascontiguousarray(arr if perm is None else np.transpose(arr, perm))
        out[key] = {"pytorch": ".".join(parts), "shape": list(converted.shape), "flax_shape": list(arr.shape),
                    "permutation": perm, "rule": rule, "array": converted}
    names = [e["pytorch"] for e in out.values()]
    assert len(set(names)) == len(names), "two Flax keys map to one PyTorch name"
    return out


# --------------------------------------------------------------------------------------------------
# transformers' own load_flax_weights_in_pytorch_model, run against a stand-in PyTorch model
# --------------------------------------------------------------------------------------------------


class _Loaded(np.ndarray):
    """What the stand-in `torch.from_numpy` returns: the array, marked as loaded."""


class _WarningLog(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: List[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _stand_in_torch():
    """sys.modules['torch'] = a module with only from_numpy, for the duration; the function's warnings
    captured instead of printed."""
    saved = sys.modules.get("torch")
    stub = types.ModuleType("torch")
    stub.from_numpy = lambda a: np.asarray(a).view(_Loaded)
    sys.modules["torch"] = stub
    log = logging.getLogger(LOGGER_NAME)
    handler = _WarningLog()
    saved_level, saved_propagate = log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(logging.WARNING)
    log.propagate = False
    try:
        yield handler
    finally:
        log.removeHandler(handler)
        log.setLevel(saved_level)
        log.propagate = saved_propagate
        if saved is None:
            del sys.modules["torch"]
        else:
            sys.modules["torch"] = saved


def _listed(messages: List[str], start: str, end: str) -> List[str]:
    """The Python list transformers printed between `start` and `end` in one of its warnings."""
    for m in messages:
        match = re.search(re.escape(start) + r"(\[.*?\])" + re.escape(end), m, re.S)
        if match:
            return sorted(ast.literal_eval(match.group(1)))
    return []


def run_transformers(flax_state: dict, pt_shapes: Dict[str, Tuple[int, ...]], class_name: str,
                     base_model_prefix: str, pt_dtype=np.float32) -> dict:
    """transformers.modeling_flax_pytorch_utils.load_flax_weights_in_pytorch_model(pt_model, flax_state) with
    a stand-in pt_model whose state_dict() has `pt_shapes`. Returns {"loaded": {name: array}, "missing": [...],
    "unexpected": [...]} or {"error": "ValueError: ..."}."""
    received = {}

    class StandIn:
        def state_dict(self):
            return {k: np.zeros(shape, pt_dtype) for k, shape in pt_shapes.items()}

        def load_state_dict(self, state):
            received.update(state)

    StandIn.__name__ = class_name
    StandIn.base_model_prefix = base_model_prefix
    with _stand_in_torch() as log:
        try:
            flax_pytorch_utils.load_flax_weights_in_pytorch_model(StandIn(), flax_state)
        except ValueError as e:
            return {"error": f"ValueError: {e}"}
    name = class_name
    return {
        "loaded": {k: np.asarray(v) for k, v in received.items() if isinstance(v, _Loaded)},
        "unexpected": _listed(log.messages, f"initializing the PyTorch model {name}: ", "\n- This IS expected"),
        "missing": _listed(log.messages, f"Some weights of {name} were not initialized from the Flax model and are "
                                         "newly initialized: ", "\nYou should"),
    }


def summary(result: dict) -> dict:
    """A run_transformers result without the arrays."""
    if "error" in result:
        return {"error": result["error"]}
    return {"loaded": sorted(result["loaded"]), "unexpected": result["unexpected"], "missing": result["missing"]}


# --------------------------------------------------------------------------------------------------
# transformers' PyTorch -> Flax loader on the converted tensors
# --------------------------------------------------------------------------------------------------


def save_pytorch_layout(directory: Path, m: hf_models.HfModel, state: Dict[str, np.ndarray],
                        max_shard_size: Optional[int] = None) -> None:
    """config.json and `state` ({PyTorch name: array}) as model.safetensors with __metadata__ {"format": "pt"},
    or, given max_shard_size, as sharded safetensors (huggingface_hub's splitter, as hf_models does)."""
    directory.mkdir(parents=True, exist_ok=True)
    m.config().save_pretrained(directory)
    if max_shard_size is None:
        safetensors.numpy.save_file(state, str(directory / hf_models.SAFE_WEIGHTS_NAME), metadata=PT_METADATA)
    else:
        hf_models.save_sharded_safetensors(directory, state, max_shard_size, metadata=PT_METADATA)


def check_with_pytorch_loader(m: hf_models.HfModel, state: Dict[str, np.ndarray], want_params: dict,
                              want_outputs: dict) -> str:
    """Loads `state` ({PyTorch name: array}) as a `format: pt` model.safetensors with m's Flax class
    (transformers' PyTorch -> Flax rules); says whether the params come back exactly and the outputs match."""
    with tempfile.TemporaryDirectory() as tmp:
        save_pytorch_layout(Path(tmp), m, state)
        outcome = hf_models.load_outcome(m, Path(tmp), want_params, want_outputs)
    return (f"{m.flax_class}.from_pretrained on the PyTorch-layout model.safetensors (format 'pt': "
            f"transformers' PyTorch -> Flax rules): {outcome}")


# --------------------------------------------------------------------------------------------------
# the PyTorch class's source, read as text
# --------------------------------------------------------------------------------------------------


def pytorch_module_file(m: hf_models.HfModel) -> Path:
    module = m.flax_cls.__module__  # transformers.models.gpt2.modeling_flax_gpt2
    arch = module.split(".")[-2]
    return TRANSFORMERS_DIR / "models" / arch / f"modeling_{arch}.py"


def flax_module_file(m: hf_models.HfModel) -> Path:
    return Path(sys.modules[m.flax_cls.__module__].__file__)


def _class_assignments(tree: ast.Module, class_name: str, attr: str) -> Optional[Tuple[object, int]]:
    """(value, line) of `attr = ...` in class_name or, failing that, the first of its bases in this file."""
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    todo = [class_name]
    while todo:
        node = classes.get(todo.pop(0))
        if node is None:
            continue
        for stmt in node.body:
            targets = stmt.targets if isinstance(stmt, ast.Assign) else \
                [stmt.target] if isinstance(stmt, ast.AnnAssign) and stmt.value is not None else []
            if any(isinstance(t, ast.Name) and t.id == attr for t in targets):
                return ast.literal_eval(stmt.value), stmt.lineno
        todo.extend(b.id for b in node.bases if isinstance(b, ast.Name))
    return None


EXTRA_REASONS = {
    "tied": "listed in the class's _tied_weights_keys and config.tie_word_embeddings=True: in state_dict(), "
            "filled by tie_weights() from the input embedding, never by the Flax checkpoint (transformers logs it "
            "missing); its shape, that of the input embedding, needs torch to read off",
    "batchnorm_counter": "a persistent buffer of torch.nn.BatchNorm2d (track_running_stats=True), int64 scalar; no "
                         "Flax leaf; transformers logs it missing (from torch's documentation: not run here)",
}


def pytorch_source_facts(m: hf_models.HfModel, flax_names: Dict[str, str]) -> dict:
    """From the PyTorch class's own module: base_model_prefix, _tied_weights_keys, registered buffers; and
    the state_dict names no Flax leaf gives. `flax_names`: {PyTorch name from the rules: rule}."""
    path = pytorch_module_file(m)
    tree = ast.parse(path.read_text())
    rel = str(path.relative_to(TRANSFORMERS_DIR.parent))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == m.pytorch_class)
    prefix = _class_assignments(tree, m.pytorch_class, "base_model_prefix")
    tied = _class_assignments(tree, m.pytorch_class, "_tied_weights_keys")
    buffers = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "register_buffer":
            name = ast.literal_eval(node.args[0]) if node.args and isinstance(node.args[0], ast.Constant) else None
            persistent = next((ast.literal_eval(k.value) for k in node.keywords if k.arg == "persistent"), True)
            buffers.append({"name": name, "persistent": persistent, "line": node.lineno})
    tie = bool(getattr(m.config(), "tie_word_embeddings", False))
    extra = {}
    if tied and tie:
        extra.update({k: {"shape": None, "reason": "tied"} for k in tied[0] if k not in flax_names})
    for name, rule in flax_names.items():
        if rule == "running_mean":
            extra[name[:-len("running_mean")] + "num_batches_tracked"] = \
                {"shape": [], "dtype": "I64", "reason": "batchnorm_counter"}
    persistent = [b for b in buffers if b["persistent"]]
    return {
        "file": rel,
        "class": m.pytorch_class,
        "class_line": cls.lineno,
        "base_model_prefix": {"value": prefix[0], "line": prefix[1]} if prefix else None,
        "tied_weights_keys": {"value": tied[0], "line": tied[1], "applies": tie} if tied else None,
        "buffers": buffers,
        "persistent_buffers_in_file": [b["name"] for b in persistent],
        "state_dict_names_without_flax_leaf": extra,
        "reasons": {r: EXTRA_REASONS[r] for r in sorted({e["reason"] for e in extra.values()})},
        "needs_torch": "the PyTorch model's state_dict() itself; names above are the rules applied to the Flax "
                       "keys, checked by transformers' PyTorch -> Flax loader, plus what the source names"
                       + ("" if not persistent else "; the module paths of the persistent buffers listed"),
    }


# --------------------------------------------------------------------------------------------------
# per-model facts (tests/fixtures/hf_<name>/pytorch.json)
# --------------------------------------------------------------------------------------------------


def inputs_note(m: hf_models.HfModel) -> dict:
    """How expected.json's inputs map to what a PyTorch / candle model takes."""
    x = m.inputs()
    note = {"given": {k: f"{v.dtype} {list(v.shape)}" for k, v in x.items()}}
    if m.pixel_inputs:
        note["layout"] = ("pixel_values is NCHW [batch, channels, height, width], as PyTorch and candle take it and "
                          f"as {m.flax_class}.__call__ took it; expected.json inputs_nhwc is what its flax module "
                          "computed on")
    else:
        note["layout"] = ("token ids and masks as int32 [batch, sequence]; PyTorch takes int64 ids, candle u32 or i64: "
                          "the same values; position ids not given: the Flax model counts 0, 1, ... itself")
    if m.name == "bert":
        note["token_type_ids"] = "not given: " + quote_after(
            flax_module_file(m), "class FlaxBertPreTrainedModel(FlaxPreTrainedModel):", "if token_type_ids is None:",
            "token_type_ids = jnp.zeros_like(input_ids)")
    return note


def model_facts(m: hf_models.HfModel, model, outputs: dict) -> dict:
    flat = hf_models.flat_keys(model.params)
    has_batch_stats = "batch_stats" in model.params
    conv = to_pytorch(flat, has_batch_stats)
    source = pytorch_source_facts(m, {e["pytorch"]: e["rule"] for e in conv.values()})
    extras = source["state_dict_names_without_flax_leaf"]
    pt_shapes = {e["pytorch"]: tuple(e["shape"]) for e in conv.values()}
    pt_shapes.update({k: tuple(v["shape"] or ()) for k, v in extras.items()})
    prefix = source["base_model_prefix"]["value"]
    ran = run_transformers(dict(model.params), pt_shapes, m.pytorch_class, prefix)
    assert "error" not in ran, ran
    loaded = ran["loaded"]
    disagree = sorted(e["pytorch"] for e in conv.values() if e["pytorch"] not in loaded
                      or loaded[e["pytorch"]].shape != e["array"].shape
                      or loaded[e["pytorch"]].tobytes() != e["array"].tobytes())
    assert not disagree and not ran["unexpected"] and sorted(ran["missing"]) == sorted(extras), \
        (m.name, disagree, ran["unexpected"], ran["missing"])
    pt_state = {e["pytorch"]: e["array"] for e in conv.values()}
    loader = check_with_pytorch_loader(m, pt_state, flat, outputs)
    notes = {}
    if m.name == "gpt2":
        kernel_line = quote(flax_module_file(m), 'self.param("kernel"')
        notes["conv1d"] = ("GPT-2's FlaxConv1D stores its kernel [out, in] "
                           f"({kernel_line}); "
                           "the `linear` rule's .T makes it [in, out], which is the layout of transformers' PyTorch "
                           "Conv1D (weight [nx, nf]). A consumer whose attention/MLP are nn.Linear (weight [out, in]) "
                           "wants the Flax kernel AS STORED, not transposed: the rule is right only for Conv1D.")
    return {
        "model": m.name,
        "flax_class": m.flax_class,
        "pytorch_class": m.pytorch_class,
        "rules": "transformers 4.57.6 load_flax_weights_in_pytorch_model, applied by hand (scripts/hf_pytorch.py "
                 "to_pytorch); rule names as in tests/fixtures/hf_flax_to_pytorch.json",
        "batch_stats_root": has_batch_stats,
        "inputs": inputs_note(m),
        "keys": {k: {f: e[f] for f in ("pytorch", "shape", "flax_shape", "permutation", "rule")}
                 for k, e in conv.items()},
        "pytorch_source": source,
        "checked": {
            "load_flax_weights_in_pytorch_model": (
                f"transformers' own function on the Flax params, against a stand-in {m.pytorch_class} whose "
                f"state_dict() has the names above: it loaded every key with the same values and shapes, "
                f"reported no unexpected key and missing only {sorted(extras) or 'none'}"),
            "pytorch_to_flax_loader": loader,
        },
        "notes": notes,
    }


# --------------------------------------------------------------------------------------------------
# where the rules go wrong (tests/fixtures/hf_flax_to_pytorch.json "cases")
# --------------------------------------------------------------------------------------------------


def _arange(shape, dtype=np.float32) -> np.ndarray:
    return np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape).astype(dtype)


def _case(what: str, flax_state: dict, pytorch: Dict[str, Tuple[int, ...]], right: Dict[str, np.ndarray],
          pytorch_source, class_name: str = "Model", prefix: str = "model") -> dict:
    """Runs transformers' function on `flax_state` against a PyTorch model with `pytorch` names and shapes;
    `right`: {PyTorch name: the array a correct conversion gives}; compares."""
    ran = run_transformers(flax_state, pytorch, class_name, prefix)
    out = {"what": what,
           "flax": {k: list(v.shape) for k, v in hf_models.flat_keys(flax_state).items()},
           "pytorch_module": {k: list(v) for k, v in pytorch.items()},
           "pytorch_source": pytorch_source,
           "transformers": summary(ran)}
    if "error" not in ran:
        loaded = ran["loaded"]
        out["values_right"] = {k: bool(k in loaded and loaded[k].shape == v.shape and np.array_equal(loaded[k], v))
                               for k, v in right.items()}
        out["loaded_dtypes"] = {k: str(v.dtype) for k, v in sorted(loaded.items())}
    return out


def _resnet_basic_case(resnet: hf_models.HfModel) -> dict:
    """transformers' own FlaxResNet with layer_type='basic' (ResNet-18/34): its list names `layer_0`."""
    kwargs = dict(resnet.config_kwargs, layer_type="basic")
    basic = hf_models.HfModel(resnet.name + "_basic", resnet.config_class, resnet.flax_class, kwargs,
                              resnet.max_shard_size, resnet.inputs, resnet.outputs)
    model = basic.make_model()
    flat = hf_models.flat_keys(model.params)
    conv = to_pytorch(flat, True)
    # PyTorch's ResNetBasicLayer holds its two convolutions in an nn.Sequential: `layer.0`, `layer.1`.
    real = {k: re.sub(r"\.layer\.layer_(\d+)\.", r".layer.\1.", e["pytorch"]) for k, e in conv.items()}
    pytorch = {real[k]: tuple(e["shape"]) for k, e in conv.items()}
    case = _case("transformers' FlaxResNetForImageClassification with layer_type='basic': "
                 "FlaxResNetBasicLayerCollection holds its convolutions in a Python list, which linen names layer_0, "
                 "layer_1; PyTorch's ResNetBasicLayer holds them in an nn.Sequential (layer.0, layer.1)",
                 dict(model.params), pytorch, {real[k]: e["array"] for k, e in conv.items()},
                 [quote_after(pytorch_module_file(resnet), "class ResNetBasicLayer(nn.Module):", "nn.Sequential("),
                  quote_after(flax_module_file(resnet), "class FlaxResNetBasicLayerCollection", "self.layer = [")],
                 basic.pytorch_class, "resnet")
    case["transformers"] = {k: len(v) if isinstance(v, list) else v for k, v in case["transformers"].items()}
    case["flax"] = {k: v for k, v in case["flax"].items() if "layer_0" in k or "layer_1" in k}
    case["pytorch_module"] = {k: v for k, v in case["pytorch_module"].items() if ".layer.0." in k or ".layer.1." in k}
    case.pop("values_right")
    case.pop("loaded_dtypes")
    # The other direction: the real PyTorch names, as a format 'pt' checkpoint, into the Flax class.
    with tempfile.TemporaryDirectory() as tmp:
        save_pytorch_layout(Path(tmp), basic, {real[k]: e["array"] for k, e in conv.items()})
        outcome = hf_models.load_outcome(basic, Path(tmp), flat, basic.run(model))
    case["pytorch_to_flax"] = f"{basic.flax_class}.from_pretrained on those PyTorch names (format 'pt'): {outcome}"
    return case


def _base_into_head_case(m: hf_models.HfModel, base_class: str, head_names: Dict[str, Tuple[int, ...]],
                         head_class: str, prefix: str) -> dict:
    """The Flax base model's params (e.g. FlaxBertModel's) into a PyTorch model with a head."""
    base = getattr(transformers, base_class)(m.config(), seed=hf_models.SEED)
    flat = hf_models.flat_keys(base.params)
    conv = to_pytorch(flat, "batch_stats" in base.params)
    right = {f"{prefix}.{e['pytorch']}": e["array"] for e in conv.values()}
    case = _case(f"{base_class}'s params (no `{prefix}.` prefix) loaded into {head_class} (whose names start "
                 f"with `{prefix}.`): the prefix should be added to every key",
                 dict(base.params), head_names, right, f"{head_class}.base_model_prefix = {prefix!r}",
                 head_class, prefix)
    right_count = sum(case.pop("values_right").values())
    case["transformers"] = {k: len(v) for k, v in case["transformers"].items()}
    case["flax"] = len(case["flax"])
    case["pytorch_module"] = len(case["pytorch_module"])
    case.pop("loaded_dtypes")
    case["loaded_right"] = f"{right_count} of {len(right)}"
    return case


def demos(facts: Dict[str, dict]) -> Dict[str, dict]:
    """Where load_flax_weights_in_pytorch_model goes wrong, each shown by running it. `facts`: the per-model
    facts of model_facts (for the names of the PyTorch models with heads)."""
    cases = {}
    k5 = _arange((2, 3, 4, 5, 6))  # D, H, W, I, O
    cases["conv3d_kernel"] = _case(
        "a 5-D nn.Conv kernel [D, H, W, in, out] (a 3-D convolution): PyTorch's Conv3d weight is [out, in, D, H, W]",
        {"conv": {"kernel": k5}}, {"conv.weight": (6, 5, 2, 3, 4)}, {"conv.weight": k5.transpose(4, 3, 0, 1, 2)},
        "torch.nn.Conv3d(5, 6, kernel_size=(2, 3, 4)).weight: [6, 5, 2, 3, 4]")
    k5c = _arange((3, 3, 3, 2, 4))
    cases["conv3d_cubic_kernel"] = _case(
        "a 5-D kernel with equal spatial sizes: .T passes the shape check and loads D and W swapped",
        {"conv": {"kernel": k5c}}, {"conv.weight": (4, 2, 3, 3, 3)}, {"conv.weight": k5c.transpose(4, 3, 0, 1, 2)},
        "torch.nn.Conv3d(2, 4, kernel_size=3).weight: [4, 2, 3, 3, 3]")
    k3 = _arange((3, 4, 5))  # W, I, O
    cases["conv1d_kernel"] = _case(
        "a 3-D nn.Conv kernel [W, in, out] (a 1-D convolution): .T gives [out, in, W], right by coincidence",
        {"conv": {"kernel": k3}}, {"conv.weight": (5, 4, 3)}, {"conv.weight": k3.transpose(2, 1, 0)},
        "torch.nn.Conv1d(4, 5, kernel_size=3).weight: [5, 4, 3]")
    kd = _arange((8, 2, 4))  # in, heads, head_dim
    cases["dense_general_3d"] = _case(
        "a 3-D nn.DenseGeneral(features=(2, 4)) kernel [in, heads, head_dim] (a fused query projection): PyTorch "
        "has nn.Linear(8, 8), weight [heads * head_dim, in]",
        {"query": {"kernel": kd}}, {"query.weight": (8, 8)}, {"query.weight": kd.reshape(8, 8).T},
        "torch.nn.Linear(8, 8).weight: [8, 8]")
    cases["name_contains_mean_or_var"] = _case(
        "leaves that are not BatchNorm statistics but whose names contain 'mean' or 'var'",
        {"head": {"ema_mean": _arange((4,)), "covariance": _arange((4,))}},
        {"head.ema_mean": (4,), "head.covariance": (4,)},
        {"head.ema_mean": _arange((4,)), "head.covariance": _arange((4,))},
        "nn.Parameter attributes `ema_mean` and `covariance` of a module `head`")
    cases["linen_list_names"] = _case(
        "linen names the modules of a list attribute `blocks_0`, `blocks_1`; PyTorch's nn.ModuleList / nn.Sequential "
        "names them `blocks.0`, `blocks.1`",
        {"blocks_0": {"dense": {"kernel": _arange((4, 3)), "bias": _arange((3,))}}},
        {"blocks.0.dense.weight": (3, 4), "blocks.0.dense.bias": (3,)},
        {"blocks.0.dense.weight": _arange((4, 3)).T, "blocks.0.dense.bias": _arange((3,))},
        "self.blocks = nn.ModuleList([Block()]) with Block.dense = nn.Linear(4, 3)")
    bf = _arange((2, 3), np.dtype("bfloat16"))
    cases["bfloat16"] = _case(
        "a bfloat16 kernel: every bfloat16 leaf is cast to float32 before conversion",
        {"dense": {"kernel": bf}}, {"dense.weight": (3, 2)}, {"dense.weight": bf.T.astype(np.float32)},
        "torch.nn.Linear(2, 3, dtype=torch.bfloat16).weight: [3, 2] bfloat16")
    cases["resnet_basic_layer_names"] = _resnet_basic_case(hf_models.MODELS["resnet"])
    bert = hf_models.MODELS["bert"]
    bert_names = {f"bert.{e['pytorch']}": tuple(e["shape"]) for e in facts["bert"]["keys"].values()}
    cases["base_model_into_head_model"] = _base_into_head_case(bert, "FlaxBertModel", bert_names,
                                                                "BertForMaskedLM", "bert")
    resnet = hf_models.MODELS["resnet"]
    head_names = {e["pytorch"]: tuple(e["shape"]) for e in facts["resnet"]["keys"].values()}
    cases["base_model_into_head_model_batch_stats"] = _base_into_head_case(
        resnet, "FlaxResNetModel", head_names, "ResNetForImageClassification", "resnet")
    return cases


def rules_document(facts: Dict[str, dict]) -> dict:
    """tests/fixtures/hf_flax_to_pytorch.json: the rules with their source lines and the demonstrations."""
    return {
        "transformers": transformers.__version__,
        "function": quote(UTILS_FILE, "def load_flax_weights_in_pytorch_model(pt_model, flax_state):"),
        "rules": RULES,
        "root": ROOT_RULE,
        "other": OTHER_RULES,
        "cases": demos(facts),
    }


__all__ = ["RULES", "ROOT_RULE", "OTHER_RULES", "to_pytorch", "run_transformers", "model_facts", "rules_document"]
