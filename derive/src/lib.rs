//! `#[derive(Params)]` for [safejax](https://docs.rs/safejax).
//!
//! serde shows a format only names: a struct's name and its fields' names. The safetensors key of a
//! leaf also depends on each struct's key style, on marks on its fields (haiku joins, objax
//! variable types and list classes) and on which fields hold tensors or modules. The derive
//! therefore describes the struct once, as the constant `Params::SCHEMA`, which the serializer and
//! the deserializer walk in step with serde. It builds no keys itself.
//!
//! It reads the `#[serde]` attributes that decide names and presence (`rename`, `rename_all`,
//! `skip`, `default`, `transparent`) so that the schema agrees with what serde does, and rejects
//! those that would make the two disagree (`flatten`, a field skipped one way only).
//!
//! The layout follows serde_derive: `attr` parses attributes into a `ctxt::Ctxt` that collects
//! every error, `ast` classifies the input, `check` rejects misused marks, `expand` generates.

#![forbid(unsafe_code)]

mod ast;
mod attr;
mod case;
mod check;
mod ctxt;
mod expand;

use proc_macro::TokenStream;
use syn::parse_macro_input;

/// Derives `safejax::Params`: the description of a struct that safetensors keys are built from.
///
/// Accepted: structs with named fields, newtype structs and `#[serde(transparent)]` structs (whose
/// schema is their field's). Every field that serde sees must be `Params` itself; a type
/// parameter that such a field mentions gets a `Params` bound.
///
/// # serde attributes honoured
///
/// - struct: `rename`, `rename_all` (serde's rules, applied exactly as serde does), `transparent`,
///   `default` (every field may be absent from a file);
/// - field: `rename`, `skip` (or `skip_serializing` with `skip_deserializing`), `default`;
/// - refused: `flatten`, `from`/`try_from`/`into`, `tag`, a field skipped one way only, and a
///   `rename`/`rename_all` that differs between serialize and deserialize: a param file is
///   written and read with the same keys.
///
/// # safejax attributes
///
/// On the struct:
/// - `#[safejax(style = "flax" | "nnx" | "haiku" | "objax")]`: how keys join below this struct;
///   without it the struct takes the style of the struct that holds it (`flax` at the root);
/// - `#[safejax(class = "MLP")]`: the objax class shown in keys (default: the serde name);
/// - `#[safejax(crate = "path::to::safejax")]`: where the generated code finds the crate.
///
/// On a field:
/// - `#[safejax(join = "/")]` (or `"/~/"`): how a haiku submodule joins its parent;
/// - `#[safejax(var = "TrainVar" | "StateVar" | "RandomState")]`: the objax variable type of the
///   tensors of the field;
/// - `#[safejax(class = "ModuleList")]`: the objax list class of a list field (default
///   `Sequential`).
///
/// A mark for another style than the struct's explicit one is an error, as is `join` on a field
/// of tensors, `var` on a field of modules and `class` on a field that is not a list (these three
/// are checked at compile time for structs without type or const parameters).
///
/// `serde` is registered as a helper attribute too, so that `#[serde(rename)]` and friends are
/// accepted (and honoured) even on a struct whose serde impls are written by hand.
#[proc_macro_derive(Params, attributes(safejax, serde))]
pub fn derive_params(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as syn::DeriveInput);
    expand::derive(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
