//! `#[derive(Params)]` on the shapes it accepts: the generated `SCHEMA` must carry the serde names
//! (renames and `rename_all` exactly as serde applies them), the styles, classes and field marks,
//! and the optional flags that `#[serde(default)]` gives.

#![allow(dead_code, non_snake_case)]

use std::collections::BTreeMap;

use safejax::__private::{FieldSchema, Join, ObjaxVar, Schema, StructSchema, Style};
use safejax::{Params, Tensor, TensorView};
use serde::{Deserialize, Serialize};

/// The struct schema of `T`; panics for any other schema.
fn struct_schema<T: Params + ?Sized>() -> &'static StructSchema {
    match T::SCHEMA {
        Schema::Struct(schema) => schema,
        other => panic!("expected a struct schema, found {other:?}"),
    }
}

fn field_names(schema: &StructSchema) -> Vec<&'static str> {
    schema.fields.iter().map(|field| field.name).collect()
}

fn field<'s>(schema: &'s StructSchema, name: &str) -> &'s FieldSchema {
    schema
        .fields
        .iter()
        .find(|field| field.name == name)
        .unwrap_or_else(|| panic!("no field `{name}` in {:?}", field_names(schema)))
}

/// `Params::IS_LEAFY`, through a function so that the assertions read it at run time.
fn is_leafy<T: Params + ?Sized>() -> bool {
    T::IS_LEAFY
}

/// `Params::IS_LIST`, likewise.
fn is_list<T: Params + ?Sized>() -> bool {
    T::IS_LIST
}

fn is_leaf(schema: &Schema) -> bool {
    matches!(schema, Schema::Leaf(_))
}

/// The struct name of a field whose type is a derived struct.
fn struct_name(schema: &Schema) -> &'static str {
    match schema {
        Schema::Struct(schema) => schema.name,
        other => panic!("expected a struct schema, found {other:?}"),
    }
}

/// The field schema with no marks, for equality checks on everything but the type.
fn plain(field: &FieldSchema) -> bool {
    !field.optional && field.join.is_none() && field.var.is_none() && field.class.is_none()
}

#[derive(Serialize, Deserialize, Params)]
struct Linear {
    w: Tensor<f32>,
    b: Tensor<f32>,
}

#[test]
fn plain_struct() {
    let schema = struct_schema::<Linear>();
    assert_eq!(schema.name, "Linear");
    assert_eq!(schema.style, None);
    assert_eq!(schema.class, None);
    assert_eq!(field_names(schema), ["w", "b"]);
    for field in schema.fields {
        assert!(plain(field), "{field:?}");
        assert!(is_leaf(field.schema.get()));
    }
    assert!(!is_leafy::<Linear>());
    assert!(!is_list::<Linear>());
}

#[derive(Serialize, Deserialize, Params)]
#[serde(rename = "Dense")]
struct DenseRenamed {
    #[serde(rename = "kernel")]
    w: Tensor<f32>,
    #[serde(rename(serialize = "bias", deserialize = "bias"))]
    b: Tensor<f32>,
    r#type: f32,
    #[serde(alias = "other", skip_serializing_if = "Option::is_none", default)]
    scale: Option<Tensor<f32>>,
}

#[test]
fn renames() {
    let schema = struct_schema::<DenseRenamed>();
    assert_eq!(schema.name, "Dense");
    assert_eq!(field_names(schema), ["kernel", "bias", "type", "scale"]);
    assert!(!field(schema, "kernel").optional);
    assert!(field(schema, "scale").optional);
    assert!(matches!(field(schema, "scale").schema.get(), Schema::Option(_)));
}

/// One struct per `rename_all` rule, compared with the names serde_json writes: the derive must
/// agree with serde_derive on every rule.
macro_rules! rename_all_cases {
    ($($test:ident: $rule:literal => [$($expected:literal),*];)*) => {$(
        #[test]
        fn $test() {
            #[derive(Serialize, Deserialize, Params, Default)]
            #[serde(rename_all = $rule)]
            struct Cased {
                batch_norm: f32,
                dense_0: f32,
                _rng: u32,
                conv1D: f32,
                #[serde(rename = "kept_AS_is")]
                renamed_field: f32,
            }
            let schema = struct_schema::<Cased>();
            assert_eq!(field_names(schema), [$($expected),*]);
            let json = serde_json::to_value(Cased::default()).unwrap();
            let serde_names: Vec<&str> =
                json.as_object().unwrap().keys().map(String::as_str).collect();
            let mut schema_names = field_names(schema);
            schema_names.sort_unstable();
            let mut serde_names = serde_names;
            serde_names.sort_unstable();
            assert_eq!(schema_names, serde_names);
        }
    )*};
}

rename_all_cases! {
    rename_all_lowercase: "lowercase" => ["batch_norm", "dense_0", "_rng", "conv1D", "kept_AS_is"];
    rename_all_uppercase: "UPPERCASE" => ["BATCH_NORM", "DENSE_0", "_RNG", "CONV1D", "kept_AS_is"];
    rename_all_pascal: "PascalCase" => ["BatchNorm", "Dense0", "Rng", "Conv1D", "kept_AS_is"];
    rename_all_camel: "camelCase" => ["batchNorm", "dense0", "rng", "conv1D", "kept_AS_is"];
    rename_all_snake: "snake_case" => ["batch_norm", "dense_0", "_rng", "conv1D", "kept_AS_is"];
    rename_all_screaming_snake: "SCREAMING_SNAKE_CASE" => ["BATCH_NORM", "DENSE_0", "_RNG", "CONV1D", "kept_AS_is"];
    rename_all_kebab: "kebab-case" => ["batch-norm", "dense-0", "-rng", "conv1D", "kept_AS_is"];
    rename_all_screaming_kebab: "SCREAMING-KEBAB-CASE" => ["BATCH-NORM", "DENSE-0", "-RNG", "CONV1D", "kept_AS_is"];
}

#[derive(Serialize, Deserialize, Params)]
#[serde(rename_all(serialize = "camelCase", deserialize = "camelCase"))]
struct SameRuleBothWays {
    batch_norm: f32,
}

#[test]
fn rename_all_both_ways() {
    assert_eq!(field_names(struct_schema::<SameRuleBothWays>()), ["batchNorm"]);
}

fn default_scale() -> Tensor<f32> {
    Tensor::new(vec![], vec![1.0]).unwrap()
}

#[derive(Serialize, Deserialize, Params)]
struct Skips {
    w: Tensor<f32>,
    /// Not a param type at all: skipped fields are not described.
    #[serde(skip)]
    cache: Vec<String>,
    #[serde(skip_serializing, skip_deserializing)]
    step_name: String,
    #[serde(default)]
    bias: Option<Tensor<f32>>,
    #[serde(default = "default_scale")]
    scale: Tensor<f32>,
}

#[test]
fn skip_and_default() {
    let schema = struct_schema::<Skips>();
    assert_eq!(field_names(schema), ["w", "bias", "scale"]);
    assert!(!field(schema, "w").optional);
    assert!(field(schema, "bias").optional);
    assert!(field(schema, "scale").optional);
}

#[derive(Serialize, Deserialize, Params, Default)]
#[serde(default)]
struct AllDefault {
    a: f32,
    b: Vec<f32>,
}

#[test]
fn container_default() {
    let schema = struct_schema::<AllDefault>();
    assert_eq!(field_names(schema), ["a", "b"]);
    assert!(schema.fields.iter().all(|field| field.optional));
}

#[derive(Serialize, Deserialize, Params)]
struct Wrap<T> {
    inner: T,
    list: Vec<T>,
    named: BTreeMap<String, T>,
}

#[derive(Serialize, Deserialize, Params)]
struct Stack<const N: usize> {
    #[serde(with = "array_as_vec")]
    layers: [Linear; N],
}

/// serde implements arrays only up to 32 elements and without const generics; the schema does
/// not care how serde gets there.
mod array_as_vec {
    pub fn serialize<S: serde::Serializer, T>(_: &T, _: S) -> Result<S::Ok, S::Error> {
        unimplemented!()
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>, T>(_: D) -> Result<T, D::Error> {
        unimplemented!()
    }
}

#[derive(Serialize, Deserialize, Params)]
struct WithWhere<T>
where
    T: Clone,
{
    x: Option<T>,
}

/// `B` appears only in a skipped field: it needs no `Params` bound.
#[derive(Serialize, Deserialize, Params)]
struct WithMarker<B> {
    w: Tensor<f32>,
    #[serde(skip)]
    backend: std::marker::PhantomData<B>,
}

#[test]
fn generics() {
    let schema = struct_schema::<Wrap<Linear>>();
    assert_eq!(schema.name, "Wrap");
    assert_eq!(field_names(schema), ["inner", "list", "named"]);
    assert_eq!(struct_name(field(schema, "inner").schema.get()), "Linear");
    match field(schema, "list").schema.get() {
        Schema::Seq(seq) => {
            assert_eq!(seq.len, None);
            assert_eq!(struct_name(seq.element.get()), "Linear");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(field(schema, "named").schema.get(), Schema::Map(_)));

    let leafy = struct_schema::<Wrap<Tensor<f32>>>();
    assert!(is_leaf(field(leafy, "inner").schema.get()));

    match field(struct_schema::<Stack<3>>(), "layers").schema.get() {
        Schema::Seq(seq) => assert_eq!(seq.len, Some(3)),
        other => panic!("{other:?}"),
    }
    assert_eq!(field_names(struct_schema::<WithWhere<f32>>()), ["x"]);
    assert_eq!(field_names(struct_schema::<WithMarker<String>>()), ["w"]);
}

#[derive(Serialize, Deserialize, Params)]
#[safejax(style = "objax")]
struct Layer<'a> {
    #[serde(borrow)]
    w: TensorView<'a, f32>,
    #[serde(borrow)]
    #[safejax(var = "StateVar")]
    mean: TensorView<'a, f32>,
    #[serde(borrow)]
    #[safejax(class = "ModuleList")]
    blocks: Vec<Block<'a>>,
}

#[derive(Serialize, Deserialize, Params)]
struct Block<'a> {
    #[serde(borrow)]
    w: TensorView<'a, f32>,
}

#[test]
fn lifetimes() {
    let schema = struct_schema::<Layer<'static>>();
    assert_eq!(field_names(schema), ["w", "mean", "blocks"]);
    assert!(is_leaf(field(schema, "w").schema.get()));
    assert_eq!(field(schema, "mean").var, Some(ObjaxVar::StateVar));
    assert_eq!(field(schema, "blocks").class, Some("ModuleList"));
}

#[derive(Serialize, Deserialize, Params)]
struct NewLinear(Linear);

#[derive(Serialize, Deserialize, Params)]
struct NewTensor(Tensor<f32>);

#[derive(Serialize, Deserialize, Params)]
struct NewList(Vec<Linear>);

#[derive(Serialize, Deserialize, Params)]
#[serde(transparent)]
struct TransparentNamed {
    layers: BTreeMap<usize, Linear>,
    #[serde(skip)]
    note: String,
}

#[derive(Serialize, Deserialize, Params)]
#[serde(transparent)]
struct TransparentTuple(#[serde(skip)] String, Tensor<f32>);

#[test]
fn newtype_and_transparent() {
    assert_eq!(struct_schema::<NewLinear>().name, "Linear");
    assert!(!is_leafy::<NewLinear>());
    assert!(is_leaf(<NewTensor as Params>::SCHEMA));
    assert!(is_leafy::<NewTensor>());
    assert!(is_list::<NewList>());
    assert!(matches!(<NewList as Params>::SCHEMA, Schema::Seq(_)));
    assert!(is_list::<TransparentNamed>());
    assert!(matches!(<TransparentNamed as Params>::SCHEMA, Schema::Map(_)));
    assert!(is_leafy::<TransparentTuple>());
    assert!(is_leaf(<TransparentTuple as Params>::SCHEMA));
}

#[derive(Serialize, Deserialize, Params)]
#[safejax(style = "flax")]
struct FlaxRoot {
    params: HkParams,
}

#[derive(Serialize, Deserialize, Params)]
#[safejax(style = "nnx")]
struct NnxModel {
    layers: Vec<Linear>,
}

#[derive(Serialize, Deserialize, Params)]
#[safejax(style = "haiku")]
struct HkParams {
    mlp: Mlp,
    #[safejax(join = "/")]
    gate: Linear,
    #[safejax(join = "/~/")]
    block: Option<Box<Mlp>>,
}

/// No style: inherits at run time, so marks for any style are accepted.
#[derive(Serialize, Deserialize, Params)]
struct Mlp {
    #[safejax(join = "/")]
    linear: Vec<Linear>,
    #[safejax(var = "RandomState")]
    key: Tensor<u32>,
    #[safejax(class = "Sequential")]
    seq: BTreeMap<u32, Option<Linear>>,
}

#[derive(Serialize, Deserialize, Params)]
#[safejax(style = "objax", class = "MLP")]
#[safejax(crate = "reexport::sj")]
struct ObjaxMlp {
    #[safejax(var = "TrainVar")]
    w: Tensor<f32>,
    #[safejax(var = "StateVar")]
    counter: i32,
    #[safejax(var = "RandomState")]
    keys: Vec<Tensor<u32>>,
    #[safejax(class = "ModuleList")]
    layers: Vec<Option<ObjaxMlp>>,
    #[safejax(class = "my_module_Sequential")]
    gaps: BTreeMap<usize, ObjaxMlp>,
    #[safejax(class = "Self_")]
    recursive: Vec<Self>,
}

mod reexport {
    pub use safejax as sj;
}

#[test]
fn styles_and_marks() {
    assert_eq!(struct_schema::<FlaxRoot>().style, Some(Style::Flax));
    assert_eq!(struct_schema::<NnxModel>().style, Some(Style::Nnx));

    let hk = struct_schema::<HkParams>();
    assert_eq!(hk.style, Some(Style::Haiku));
    assert_eq!(field(hk, "mlp").join, None);
    assert_eq!(field(hk, "gate").join, Some(Join::Slash));
    assert_eq!(field(hk, "block").join, Some(Join::Tilde));

    let mlp = struct_schema::<Mlp>();
    assert_eq!(mlp.style, None);
    assert_eq!(field(mlp, "linear").join, Some(Join::Slash));
    assert_eq!(field(mlp, "key").var, Some(ObjaxVar::RandomState));
    assert_eq!(field(mlp, "seq").class, Some("Sequential"));

    let objax = struct_schema::<ObjaxMlp>();
    assert_eq!(objax.name, "ObjaxMlp");
    assert_eq!(objax.style, Some(Style::Objax));
    assert_eq!(objax.class, Some("MLP"));
    assert_eq!(field(objax, "w").var, Some(ObjaxVar::TrainVar));
    assert_eq!(field(objax, "counter").var, Some(ObjaxVar::StateVar));
    assert_eq!(field(objax, "keys").var, Some(ObjaxVar::RandomState));
    assert_eq!(field(objax, "layers").class, Some("ModuleList"));
    assert_eq!(field(objax, "gaps").class, Some("my_module_Sequential"));
    assert_eq!(field(objax, "recursive").class, Some("Self_"));
    for field in objax.fields {
        assert_eq!(field.join, None);
        assert!(!field.optional);
    }
}

/// `#[serde]` is a helper attribute of the derive too: a struct whose serde impls are written by
/// hand (or absent) still gets its names from it.
#[derive(Params)]
#[serde(rename = "Renamed", rename_all = "PascalCase")]
struct WithoutSerdeDerive {
    first_layer: Tensor<f32>,
}

#[test]
fn serde_attributes_without_serde_derive() {
    let schema = struct_schema::<WithoutSerdeDerive>();
    assert_eq!(schema.name, "Renamed");
    assert_eq!(field_names(schema), ["FirstLayer"]);
}

/// Unknown serde keys, nested lists and expression values are skipped.
#[derive(Serialize, Deserialize, Params)]
#[serde(deny_unknown_fields, bound(serialize = "", deserialize = ""), expecting = "a tree")]
struct Tolerant {
    #[serde(
        alias = "kernel",
        serialize_with = "serialize_tensor",
        deserialize_with = "deserialize_tensor"
    )]
    w: Tensor<f32>,
    children: Vec<Tolerant>,
}

fn serialize_tensor<S: serde::Serializer>(t: &Tensor<f32>, s: S) -> Result<S::Ok, S::Error> {
    t.serialize(s)
}

fn deserialize_tensor<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Tensor<f32>, D::Error> {
    Tensor::deserialize(d)
}

#[test]
fn tolerant_serde_parsing_and_recursion() {
    let schema = struct_schema::<Tolerant>();
    assert_eq!(field_names(schema), ["w", "children"]);
    match field(schema, "children").schema.get() {
        Schema::Seq(seq) => assert_eq!(struct_name(seq.element.get()), "Tolerant"),
        other => panic!("{other:?}"),
    }
}

#[derive(Serialize, Deserialize, Params)]
struct Empty {}

#[test]
fn empty_struct() {
    assert!(struct_schema::<Empty>().fields.is_empty());
}
