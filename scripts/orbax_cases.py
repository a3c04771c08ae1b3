"""Orbax checkpoints: the sidecar format, what is on disk, and the restores that check a checkpoint.

Shared by scripts/gen_orbax_fixtures.py (writes tests/fixtures/orbax/<case>/ with real orbax-checkpoint
0.12.8 and their sidecars <case>.json), scripts/check_rust_orbax.py (restores checkpoints the Rust crate
wrote and compares them with a sidecar) and scripts/bench_orbax.py.

The sidecar (<case>.json) has the keys of the safetensors fixtures (tests/fixtures/<name>.json) and more:
  name, description, versions  as in the other fixtures; `orbax_call` is the Orbax call that wrote it;
  layout     {"kind": "item" | "v1" | "manager" | "composite", "item": the item directory (the one
             holding _METADATA) relative to the case directory}; a v1 checkpoint is loaded from the case
             directory itself, a manager from its root;
  restore    {mode: "ok" | "fails: <first line of Orbax's error>"}: what each restore of MODES gave on the
             real checkpoint (the checker runs the modes marked "ok", all of them when the key is absent);
  tensors    {dotted key: {"path": [segments], "key_types": [...], "value_type", "dtype", "shape",
             "values"}} for every array leaf, sorted by key. The dotted key joins the path with "." (the
             key of the safetensors fixtures, and Orbax's own param name); `key_types` are Orbax's (_METADATA
             `key_metadata`: 1 a sequence index, 2 a dict key or attribute); `value_type` is Orbax's
             ("jax.Array", "np.ndarray", "scalar"); `dtype` is the safejax name ("F32", "BF16", "F8_E4M3"
             ...) or, for a dtype safejax has no name for, the ml_dtypes name ("int4", "float8_e3m4");
             `values` are exact (C order; floats widened to double). A PRNG key leaf adds "prng_impl" and
             "key_shape": its dtype/shape/values are those of jax.random.key_data (uint32);
  strings    {dotted key: {"path", "key_types", "value"}}: leaves Orbax keeps in _strings.json;
  skipped    {dotted key: {"path", "key_types", "value_type"}}: None and empty dicts (no data on disk);
  on_disk    what a reader must know, as found: `_METADATA` flags, the files (32-hex names collapsed),
             the OCDBT manifest and B-tree, and per array its zarr metadata and the stored size of each
             chunk (compressed bytes as stored) with, under OCDBT, "inline" or the directory of its data file;
  manager    (kind "manager") {"latest_step", "unfinished": [tmp dirs], "steps": {step: {"tensors"}}};
  items      (kind "composite") {item name: {"handler", "json"}} for the items besides the tree item.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Mapping

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import models  # noqa: E402  (sets JAX_PLATFORMS=cpu and the safejax shims before jax is used)
from check_rust_msgpack import check_leaves  # noqa: E402
from checks import CheckError, ensure  # noqa: E402
from gen_fixtures import values_list  # noqa: E402

import jax  # noqa: E402
import ml_dtypes  # noqa: E402
import orbax.checkpoint as ocp  # noqa: E402
import tensorstore as ts  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "orbax"
VERSION_PACKAGES = ["orbax-checkpoint", "tensorstore", "jax", "jaxlib", "flax", "optax", "dm-haiku", "numpy",
                    "ml_dtypes"]
KEY_TYPE = {1: "sequence", 2: "dict"}
ARRAY_VALUE_TYPES = ("jax.Array", "np.ndarray", "scalar")
SKIPPED_VALUE_TYPES = ("None", "Dict")
HEX_NAME = re.compile(r"[0-9a-f]{32}")

# --------------------------------------------------------------------------------------------------
# dtypes and leaves
# --------------------------------------------------------------------------------------------------

_ML_INTS = {np.dtype(getattr(ml_dtypes, n)) for n in ("int2", "int4", "uint2", "uint4")}


def dtype_name(dtype) -> str:
    """The safejax name of a dtype, or its numpy / ml_dtypes name when safejax has none."""
    dtype = np.dtype(dtype)
    return models.st_dtype_name(dtype) if dtype in models.ST_DTYPES.values() else dtype.name


def np_dtype(name: str) -> np.dtype:
    """The dtype of a safejax name, an ml_dtypes name, or a numpy / zarr dtype string ("<f4", "float32")."""
    if name in models.ST_DTYPES:
        return models.ST_DTYPES[name]
    return np.dtype(getattr(ml_dtypes, name)) if hasattr(ml_dtypes, name) else np.dtype(name)


def leaf_values(arr: np.ndarray) -> list:
    """Exact values as JSON numbers (ml_dtypes' int2/int4 as ints, as the numpy integers are)."""
    arr = np.asarray(arr)
    return values_list(arr.astype(np.int64) if arr.dtype in _ML_INTS else arr)


@contextlib.contextmanager
def x64(enabled: bool = True):
    """jax_enable_x64 set globally (jax.enable_x64 is thread-local, and Orbax restores in other threads:
    ocp.v1.load then gives float64 arrays as float32)."""
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", enabled)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", before)


def is_prng_key(x) -> bool:
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def tensor_entry(path: list, key_types: list, value_type: str, leaf) -> dict:
    entry = {"path": path, "key_types": key_types, "value_type": value_type}
    if is_prng_key(leaf):
        entry["prng_impl"] = str(jax.random.key_impl(leaf))
        entry["key_shape"] = list(leaf.shape)
        leaf = jax.random.key_data(leaf)
    arr = np.asarray(leaf)
    entry.update(dtype=dtype_name(arr.dtype), shape=list(arr.shape), values=leaf_values(arr))
    return entry


def _segment(k) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    raise TypeError(f"unknown key path entry {k!r}")


def tree_leaves(tree) -> Dict[tuple, Any]:
    """{path tuple of str: leaf} of a tree as jax flattens it (what Orbax saves; None and {} have no leaf)."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {tuple(_segment(k) for k in path): leaf for path, leaf in flat}


def read_tree_metadata(item: Path) -> dict:
    return json.loads((item / "_METADATA").read_text())


def sidecar_leaves(item: Path, tree) -> dict:
    """The "tensors", "strings" and "skipped" of a sidecar: paths, key types and value types from the
    checkpoint's _METADATA (as Orbax wrote them), values from the tree that was saved."""
    leaves = tree_leaves(tree)
    out = {"tensors": {}, "strings": {}, "skipped": {}}
    for entry in read_tree_metadata(item)["tree_metadata"].values():
        path = [k["key"] for k in entry["key_metadata"]]
        key_types = [k["key_type"] for k in entry["key_metadata"]]
        value_type = entry["value_metadata"]["value_type"]
        key = ".".join(path)
        if value_type in SKIPPED_VALUE_TYPES:
            out["skipped"][key] = {"path": path, "key_types": key_types, "value_type": value_type}
            continue
        leaf = leaves.pop(tuple(path))
        if value_type == "string":
            out["strings"][key] = {"path": path, "key_types": key_types, "value": leaf}
        else:
            assert value_type in ARRAY_VALUE_TYPES, (key, value_type)
            out["tensors"][key] = tensor_entry(path, key_types, value_type, leaf)
    assert not leaves, f"leaves missing from _METADATA: {sorted(leaves)}"
    return {k: dict(sorted(v.items())) for k, v in out.items()}


# --------------------------------------------------------------------------------------------------
# what is on disk
# --------------------------------------------------------------------------------------------------


PROCESS_DB = re.compile(r"(^|/)(ocdbt\.process_[^/]+)/.*")


def file_names(root: Path) -> dict:
    """{relative path: count} of every file under root, 32-hex names collapsed to `<32 hex>` (Orbax and
    tensorstore name data files at random) and each per-process OCDBT database to one `ocdbt.process_N/*`
    entry (how many generations, so files, it has depends on how its writes were batched)."""
    names: Dict[str, int] = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            rel = HEX_NAME.sub("<32 hex>", PROCESS_DB.sub(r"\1\2/*", p.relative_to(root).as_posix()))
            names[rel] = 1 if PROCESS_DB.search(p.relative_to(root).as_posix()) else names.get(rel, 0) + 1
    return names


def _kvstore(item: Path, use_ocdbt: bool) -> ts.KvStore:
    spec = {"driver": "ocdbt", "base": f"file://{item}/"} if use_ocdbt else f"file://{item}/"
    return ts.KvStore.open(spec).result()


def _btree_storage(base: ts.KvStore, location: str, height: int, prefix: bytes, nodes: dict, storage: dict) -> None:
    """Walks the B-tree node at location (its keys relative to prefix): counts nodes by height and records
    how each key's value is stored."""
    node = ts.ocdbt.dump(base, location).result()
    assert node["height"] == height, (location, node["height"], height)
    nodes[height] = nodes.get(height, 0) + 1
    for e in node["entries"]:
        if height > 0:
            _btree_storage(base, e["location"], height - 1, prefix + e["subtree_common_prefix"], nodes, storage)
        elif "inline_value" in e:
            storage[(prefix + e["key"]).decode()] = "inline"
        else:  # 'value:ocdbt.process_0/:d/<32 hex>:offset:length'
            _, file_base, file, _, _ = e["indirect_value"].split(":")
            storage[(prefix + e["key"]).decode()] = "out of line in " + HEX_NAME.sub("<32 hex>", file_base + file)


def ocdbt_summary(item: Path) -> tuple[dict, dict]:
    """(the manifest and B-tree as found, {kvstore key: storage}) of the OCDBT database at item."""
    base = ts.KvStore.open(f"file://{item}/").result()
    manifest = ts.ocdbt.dump(base).result()
    latest = manifest["versions"][-1]
    nodes: Dict[int, int] = {}
    storage: Dict[str, str] = {}
    _btree_storage(base, latest["root"]["location"], latest["root_height"], b"", nodes, storage)
    numbered = sorted(p.name for p in item.glob("manifest.[0-9]*"))
    summary = {
        "manifest_kind": "numbered" if numbered else "single",
        "manifest_files": ["manifest.ocdbt", *numbered],
        "config": {k: v for k, v in manifest["config"].items() if k != "uuid"},
        "versions": len(manifest["versions"]),
        "version_tree_nodes": len(manifest["version_tree_nodes"]),
        "root_height": latest["root_height"],
        "num_keys": latest["root"]["statistics"]["num_keys"],
        "btree_nodes_by_height": {str(h): n for h, n in sorted(nodes.items(), reverse=True)},
    }
    return summary, storage


def describe_item(item: Path, db: Path | None = None) -> dict:
    """What a reader of the item directory must know, as found on disk; `db`: describe the OCDBT database
    there (a per-process one) instead of the item's own."""
    md = read_tree_metadata(item)
    use_ocdbt = bool(md.get("use_ocdbt", (item / "manifest.ocdbt").exists()))
    out: dict = {} if db else {"_METADATA": metadata_flags(md)}
    storage: Dict[str, str] = {}
    if use_ocdbt:
        out["ocdbt"], storage = ocdbt_summary(db or item)
        if db:  # how many generations a per-process database has depends on how its writes were batched
            del out["ocdbt"]["versions"], out["ocdbt"]["version_tree_nodes"]
    kv = _kvstore(db or item, use_ocdbt)
    meta_name = "zarr.json" if md.get("use_zarr3") else ".zarray"
    arrays = {}
    for name in array_names(md):
        keys = [k.decode() for k in kv.list(ts.KvStore.KeyRange(name + "/", name + "0")).result()]
        entry: dict = {}
        if f"{name}/{meta_name}" in keys:
            entry["metadata"] = json.loads(kv.read(f"{name}/{meta_name}").result().value)
        entry["chunks"] = {}
        for key in keys:
            if key != f"{name}/{meta_name}":
                size = len(kv.read(key).result().value)
                entry["chunks"][key[len(name) + 1:]] = {"bytes": size, "stored": storage[key]} if storage else size
        if keys:
            arrays[name] = entry
    out["arrays"] = dict(sorted(arrays.items()))
    if not db and (item / "array_metadatas").is_dir():
        out["array_metadatas"] = {p.name: json.loads(p.read_text())["array_metadatas"]
                                  for p in sorted((item / "array_metadatas").iterdir())}
    return out


def metadata_flags(md: dict) -> dict:
    """The layout flags of a _METADATA (None where absent: Orbax then guesses use_ocdbt from manifest.ocdbt
    and takes use_zarr3 and store_array_data_equal_to_fill_value as false)."""
    return {k: md.get(k) for k in ("use_ocdbt", "use_zarr3", "store_array_data_equal_to_fill_value")}


def array_names(md: dict) -> list[str]:
    """The param names (kvstore prefixes) of the arrays in a _METADATA."""
    return [".".join(k["key"] for k in e["key_metadata"]) for e in md["tree_metadata"].values()
            if e["value_metadata"]["value_type"] in ARRAY_VALUE_TYPES]


def union_of_processes(item: Path, context: ts.Context) -> ts.KvStore:
    """An in-memory kvstore holding every key of the item's per-process OCDBT databases (what a merge
    would give; for a checkpoint saved without one)."""
    union = ts.KvStore.open("memory://", context=context).result()
    for db in sorted(item.glob("ocdbt.process_*")):
        kv = _kvstore(db, True)
        for key in kv.list().result():
            union.write(key, kv.read(key).result().value).result()
    return union


def read_unmerged(item: Path, sc: dict) -> Dict[str, np.ndarray]:
    """{dotted key: array} read with tensorstore's zarr driver from the union of the per-process databases."""
    context = ts.Context()
    union_of_processes(item, context)
    driver = "zarr3" if read_tree_metadata(item).get("use_zarr3") else "zarr"
    return {key: ts.open({"driver": driver, "kvstore": f"memory://{key}/"}, context=context).result().read().result()
            for key in sc["tensors"]}


# --------------------------------------------------------------------------------------------------
# restoring with Orbax and comparing with a sidecar
# --------------------------------------------------------------------------------------------------


def _nest(entries: list[tuple[list, list, Any]]):
    """A tree holding each (path, key_types, leaf): dicts, and lists for the containers whose keys have
    key type 1 (sequence indices)."""
    root: dict = {}
    sequences = set()
    for path, key_types, leaf in entries:
        node = root
        for seg in path[:-1]:
            node = node.setdefault(seg, {})
        node[path[-1]] = leaf
        sequences.update(tuple(path[:i]) for i, kt in enumerate(key_types) if kt == 1)

    def walk(node, prefix):
        if not isinstance(node, dict) or not node:
            return node
        children = {k: walk(v, prefix + (k,)) for k, v in node.items()}
        return [children[str(i)] for i in range(len(children))] if prefix in sequences else children

    return walk(root, ())


def abstract_tree(sc: dict, tensors: dict | None = None):
    """The restore target of a sidecar: jax.ShapeDtypeStruct (on the first CPU device) for jax arrays and
    PRNG keys, zero numpy arrays, Python zeros for scalars, "" for strings, None / {} for skipped leaves."""
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    entries = []
    for e in (tensors if tensors is not None else sc["tensors"]).values():
        dt = np_dtype(e["dtype"])
        if "prng_impl" in e:
            key_dtype = jax.random.key(0, impl=e["prng_impl"]).dtype
            leaf = jax.ShapeDtypeStruct(tuple(e["key_shape"]), key_dtype, sharding=sharding)
        elif e["value_type"] == "jax.Array":
            leaf = jax.ShapeDtypeStruct(tuple(e["shape"]), dt, sharding=sharding)
        elif e["value_type"] == "np.ndarray":
            leaf = np.zeros(e["shape"], dt)
        else:
            leaf = np.zeros((), dt).item()
        entries.append((e["path"], e["key_types"], leaf))
    for e in sc.get("strings", {}).values():
        entries.append((e["path"], e["key_types"], ""))
    for e in sc.get("skipped", {}).values():
        entries.append((e["path"], e["key_types"], None if e["value_type"] == "None" else {}))
    return _nest(entries)


def restored_leaves(tree) -> Dict[str, tuple[list, Any]]:
    """{dotted key: (container kinds along the path, leaf)} of a restored tree: dicts (and other mappings)
    and lists/tuples are containers; anything else, None and an empty dict are leaves."""
    out: Dict[str, tuple[list, Any]] = {}

    def walk(node, path, kinds):
        if isinstance(node, Mapping) and node:
            items, kind = [(str(k), v) for k, v in node.items()], "dict"
        elif isinstance(node, (list, tuple)) and node:
            items, kind = [(str(i), v) for i, v in enumerate(node)], "sequence"
        else:
            out[".".join(path)] = (kinds, node)
            return
        for k, v in items:
            walk(v, path + [k], kinds + [kind])

    walk(tree, [], [])
    return out


def compare_tree(what: str, tree, sc: dict, tensors: dict | None = None, fx_name: str = "the sidecar") -> None:
    """A restored tree against a sidecar: the same paths in the same containers (dicts where the sidecar
    has key type 2, lists where it has 1), the leaf types of `value_type`, and exact dtypes, shapes and
    values; strings equal; None and {} where they were saved."""
    tensors = sc["tensors"] if tensors is None else tensors
    got = restored_leaves(tree)
    want = {**tensors, **sc.get("strings", {}), **sc.get("skipped", {})}
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    ensure(not missing and not extra, f"{what}: paths differ: missing {missing}, unexpected {extra}")
    arrays = {}
    for key, e in want.items():
        kinds, leaf = got[key]
        want_kinds = [KEY_TYPE[k] for k in e["key_types"]]
        ensure(kinds == want_kinds, f"{what}: `{key}` sits in containers {kinds}, expected {want_kinds}")
        if "value" in e:
            ensure(leaf == e["value"], f"{what}: `{key}` is {leaf!r}, expected the string {e['value']!r}")
        elif e.get("value_type") in SKIPPED_VALUE_TYPES:
            empty = None if e["value_type"] == "None" else {}
            ensure(leaf == empty and type(leaf) is type(empty), f"{what}: `{key}` is {leaf!r}, expected {empty!r}")
        else:
            arrays[key] = _array_of(what, key, e, leaf)
    check_leaves(what, arrays, {"tensors": tensors}, fx_name)


def _array_of(what: str, key: str, e: dict, leaf) -> np.ndarray:
    """The numpy array that a restored leaf holds, after checking its type against the sidecar's."""
    vt = e["value_type"]
    if vt == "jax.Array":
        ensure(isinstance(leaf, jax.Array), f"{what}: `{key}` is a {type(leaf).__name__}, expected a jax.Array")
        if "prng_impl" in e:
            ensure(is_prng_key(leaf), f"{what}: `{key}` is a {leaf.dtype} array, expected a PRNG key")
            impl = str(jax.random.key_impl(leaf))
            ensure(impl == e["prng_impl"], f"{what}: `{key}`: PRNG impl {impl}, expected {e['prng_impl']}")
            ensure(list(leaf.shape) == e["key_shape"], f"{what}: `{key}`: key shape {list(leaf.shape)}, "
                                                       f"expected {e['key_shape']}")
            leaf = jax.random.key_data(leaf)
        else:
            ensure(not is_prng_key(leaf), f"{what}: `{key}` is a PRNG key, expected a {e['dtype']} array")
        return np.asarray(leaf)
    if vt == "np.ndarray":
        ensure(type(leaf) is np.ndarray, f"{what}: `{key}` is a {type(leaf).__name__}, expected a numpy array")
        return leaf
    # a scalar comes back as a Python bool / int / float of the stored value
    kind = np_dtype(e["dtype"]).kind
    py = {"b": bool, "i": int, "u": int}.get(kind, float)
    ensure(type(leaf) is py, f"{what}: `{key}` is a {type(leaf).__name__}, expected a Python {py.__name__}")
    return np.asarray(leaf).astype(np_dtype(e["dtype"]))


MODES: Dict[str, str] = {
    "standard": "ocp.StandardCheckpointer().restore(item)",
    "standard_target": "ocp.StandardCheckpointer().restore(item, abstract tree)",
    "pytree": "ocp.PyTreeCheckpointer().restore(item)",
    "pytree_target": "ocp.PyTreeCheckpointer().restore(item, args=PyTreeRestore(abstract tree, restore args))",
    "v1": "ocp.v1.load(path) (path: the item, a step with checkpointable_name, or a v1 root)",
    "manager": "ocp.CheckpointManager(root): latest_step(), restore(step) of every step",
}


def _pytree_target_restore(item: Path, target):
    args = ocp.args.PyTreeRestore(item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target))
    return ocp.PyTreeCheckpointer().restore(item, args=args)


def _v1_load(case_dir: Path, item: Path, kind: str):
    """ocp.v1.load of the case: a v1 checkpoint from its root, a step's item from the step directory (v1
    does not recognize an item directory without a _CHECKPOINT_METADATA), a lone item from itself."""
    if kind == "v1":
        return ocp.v1.load(case_dir)
    if kind in ("manager", "composite"):
        return ocp.v1.load(item.parent, checkpointable_name=item.name)
    return ocp.v1.load(item)


def _manager_check(case_dir: Path, sc: dict) -> str:
    m = sc["manager"]
    mngr = ocp.CheckpointManager(case_dir)
    ensure(mngr.latest_step() == m["latest_step"], f"latest_step() is {mngr.latest_step()}, "
                                                   f"expected {m['latest_step']}")
    ensure(list(mngr.all_steps()) == sorted(int(s) for s in m["steps"]),
           f"all_steps() is {list(mngr.all_steps())}, expected {sorted(int(s) for s in m['steps'])}")
    for step, entry in m["steps"].items():
        restored = mngr.restore(int(step))
        compare_tree(f"CheckpointManager.restore({step})", restored, sc, entry["tensors"])
        target = abstract_tree(sc, entry["tensors"])
        restored = mngr.restore(int(step), args=ocp.args.StandardRestore(target))
        compare_tree(f"CheckpointManager.restore({step}, StandardRestore(target))", restored, sc, entry["tensors"])
    return f"latest_step() {m['latest_step']}, {len(m['steps'])} steps restored"


def _composite_check(case_dir: Path, sc: dict) -> str:
    item = Path(sc["layout"]["item"])
    step, tree_item = int(item.parts[0]), item.parts[1]
    names = (tree_item, *sc["items"])
    mngr = ocp.CheckpointManager(case_dir, item_names=names)
    ensure(mngr.latest_step() == step, f"latest_step() is {mngr.latest_step()}, expected {step}")
    args = {tree_item: ocp.args.StandardRestore(abstract_tree(sc)),
            **{n: ocp.args.JsonRestore() for n in sc["items"]}}
    restored = mngr.restore(step, args=ocp.args.Composite(**args))
    compare_tree(f"CheckpointManager.restore({step}, Composite)[{tree_item!r}]", restored[tree_item], sc)
    for n, entry in sc["items"].items():
        ensure(restored[n] == entry["json"], f"item {n!r} is {restored[n]!r}, expected {entry['json']!r}")
    return f"step {step}: items {list(names)} restored"


def restore_modes(case_dir: Path, sc: dict) -> Dict[str, Callable[[], str]]:
    """Every restore of MODES that applies to the case's layout, as a check returning a detail."""
    item = case_dir / sc["layout"]["item"]
    kind = sc["layout"]["kind"]

    def tree_check(what: str, restore: Callable[[], Any]) -> Callable[[], str]:
        def run() -> str:
            compare_tree(what, restore(), sc)
            return "equal"
        return run

    modes = {
        "standard": tree_check(MODES["standard"], lambda: ocp.StandardCheckpointer().restore(item)),
        "standard_target": tree_check(MODES["standard_target"],
                                      lambda: ocp.StandardCheckpointer().restore(item, abstract_tree(sc))),
        "pytree": tree_check(MODES["pytree"], lambda: ocp.PyTreeCheckpointer().restore(item)),
        "pytree_target": tree_check(MODES["pytree_target"], lambda: _pytree_target_restore(item, abstract_tree(sc))),
        "v1": tree_check(MODES["v1"], lambda: _v1_load(case_dir, item, kind)),
    }
    if kind == "manager":
        modes["manager"] = lambda: _manager_check(case_dir, sc)
    if kind == "composite":
        modes["manager"] = lambda: _composite_check(case_dir, sc)
    return modes


def error_summary(e: BaseException, case_dir: Path) -> str:
    """The first line of an error, without what varies from run to run: the checkpoint's path, the
    tensorstore spec, and which array's missing metadata was met first."""
    text = str(e).strip().splitlines()
    line = (text[0] if text else "").replace(str(case_dir), "<case>").split(" [tensorstore_spec")[0]
    line = re.sub(r'Metadata at "[^"]*/(\.zarray|zarr\.json)"', r'Metadata at "<array>/\1"', line)
    line = re.sub(r"array index: \(.*?\)\. See full TensorStore details.*", "array index: <index>", line)
    return f"{type(e).__name__}: {line[:300]}"


def try_restores(case_dir: Path, sc: dict) -> Dict[str, str]:
    """{mode: "ok" | "fails: ..."} for every mode; a restore that returns a different tree raises."""
    found = {}
    for mode, check in restore_modes(case_dir, sc).items():
        try:
            check()
            found[mode] = "ok"
        except CheckError:
            raise
        except Exception as e:  # noqa: BLE001 - what Orbax refuses is a finding, recorded in the sidecar
            found[mode] = "fails: " + error_summary(e, case_dir)
    return found


def expected_modes(sc: dict) -> list[str]:
    """The restores a checkpoint with this sidecar must pass: those marked "ok", or all of them."""
    recorded = sc.get("restore")
    applicable = list(restore_modes(Path("."), sc))
    return [m for m in applicable if recorded is None or recorded.get(m) == "ok"]
