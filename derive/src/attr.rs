//! Parsing of `#[serde(...)]` and `#[safejax(...)]` attributes.
//!
//! `#[serde]` is read for what decides the names and presence of keys (renames, skips, defaults);
//! the rest of serde's attributes are skipped, tolerantly, since serde_derive checks them itself.
//! `#[safejax]` is ours: every mistake in it is recorded in the [`Ctxt`], spanned on the offending
//! token, and parsing goes on so that all mistakes are reported at once.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::meta::ParseNestedMeta;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Lit, LitStr, Token};

use crate::case::RenameRule;
use crate::ctxt::Ctxt;

/// A value of a `#[safejax]` key, with the tokens it was written as, for error spans.
pub struct Keyed<T> {
    /// The parsed value.
    pub value: T,
    /// The attribute's key (`style`, `join`...): misuse errors point at it.
    pub key: syn::Path,
}

impl<T> Keyed<T> {
    /// The span of the key, for errors about using the attribute here at all.
    pub fn span(&self) -> Span {
        self.key.span()
    }
}

/// A `#[safejax]` key that may be given once.
struct Attr<'c, T> {
    cx: &'c Ctxt,
    name: &'static str,
    /// Whether the key appeared, even with a value that was refused: a second occurrence is a
    /// duplicate whatever the values.
    seen: bool,
    value: Option<Keyed<T>>,
}

impl<'c, T> Attr<'c, T> {
    fn none(cx: &'c Ctxt, name: &'static str) -> Self {
        Attr {
            cx,
            name,
            seen: false,
            value: None,
        }
    }

    /// Notes an occurrence of the key; the second one is an error on its key.
    fn seen(&mut self, key: &syn::Path) {
        if self.seen {
            self.cx
                .error_spanned_by(key, format_args!("duplicate safejax attribute `{}`", self.name));
        }
        self.seen = true;
    }

    /// Records a valid value (the first one: any other is already a duplicate error).
    fn set(&mut self, key: &syn::Path, value: T) {
        if self.value.is_none() {
            self.value = Some(Keyed {
                value,
                key: key.clone(),
            });
        }
    }

    /// Notes an occurrence and records its string value as `parse` reads it (`parse` reports what
    /// it refuses).
    fn parse_str(&mut self, meta: &ParseNestedMeta, parse: impl FnOnce(LitStr) -> Option<T>) -> syn::Result<()> {
        self.seen(&meta.path);
        if let Some(value) = get_str(self.cx, self.name, meta)?.and_then(parse) {
            self.set(&meta.path, value);
        }
        Ok(())
    }

    fn get(self) -> Option<Keyed<T>> {
        self.value
    }
}

/// The values `#[safejax(style = "...")]`, `join` and `var` accept. Only the names live here, to
/// report a typo on its token: the generated code hands the name to the library
/// (`safejax::__private::Style::from_name` and the like), which owns what each one means.
pub const STYLES: [&str; 4] = ["flax", "nnx", "haiku", "objax"];
/// See [`STYLES`].
pub const JOINS: [&str; 2] = ["/", "/~/"];
/// See [`STYLES`].
pub const VARS: [&str; 3] = ["TrainVar", "StateVar", "RandomState"];

/// A struct's attributes.
pub struct Container {
    /// The serde name (`#[serde(rename)]`, else the identifier).
    pub name: String,
    /// `#[serde(rename_all)]`.
    pub rename_all: RenameRule,
    /// `#[serde(transparent)]`.
    pub transparent: bool,
    /// `#[serde(default)]`: every field may be absent.
    pub default: bool,
    /// `#[safejax(style)]`.
    pub style: Option<Keyed<&'static str>>,
    /// `#[safejax(class)]`.
    pub class: Option<Keyed<String>>,
    /// `#[safejax(crate)]`.
    pub crate_path: Option<syn::Path>,
}

/// A field's attributes.
pub struct Field {
    /// The serde name, without `rename_all` (applied by the struct, to unrenamed fields only).
    pub name: String,
    /// Whether `#[serde(rename)]` gave the name.
    pub renamed: bool,
    /// `#[serde(skip)]`, or both `skip_serializing` and `skip_deserializing`.
    pub skip: bool,
    /// `#[serde(default)]`.
    pub default: bool,
    /// `#[safejax(join)]`.
    pub join: Option<Keyed<&'static str>>,
    /// `#[safejax(var)]`.
    pub var: Option<Keyed<&'static str>>,
    /// `#[safejax(class)]`.
    pub class: Option<Keyed<String>>,
    /// `#[safejax(shape = [...])]`.
    pub shape: Option<Keyed<Vec<Dim>>>,
    /// `#[safejax(len = N)]` on a `Vec` field.
    pub len: Option<Keyed<usize>>,
}

/// One dimension of `#[safejax(shape = [...])]`, handed to the library as
/// `safejax::__private::Dim`.
pub enum Dim {
    Fixed(usize),
    Named(String),
    Any,
}

/// The name serde gives an identifier: without `r#`.
pub fn unraw(ident: &syn::Ident) -> String {
    ident.unraw().to_string()
}

/// The keys of the struct-level `#[safejax]`, for the unknown-key message.
const CONTAINER_KEYS: &str = "`style`, `class`, `crate`";
/// The keys of the field-level `#[safejax]`, for the unknown-key message.
const FIELD_KEYS: &str = "`join`, `var`, `class`, `shape`, `len`";

impl Container {
    pub fn from_ast(cx: &Ctxt, input: &syn::DeriveInput) -> Self {
        let mut style = Attr::none(cx, "style");
        let mut class = Attr::none(cx, "class");
        let mut crate_path = Attr::none(cx, "crate");
        let mut names = NamePair::default();
        let mut rules = RulePair::default();
        let mut transparent = false;
        let mut default = false;

        for attr in &input.attrs {
            if attr.path().is_ident("serde") {
                parse_serde(attr, |meta| {
                    if meta.path.is_ident("rename") {
                        names.parse(&meta)?;
                    } else if meta.path.is_ident("rename_all") {
                        rules.parse(&meta)?;
                    } else if meta.path.is_ident("transparent") {
                        transparent = true;
                    } else if meta.path.is_ident("default") {
                        default = true;
                        skip_value(&meta)?;
                    } else if ["from", "try_from", "into"].iter().any(|key| meta.path.is_ident(key)) {
                        cx.error_spanned_by(
                            &meta.path,
                            format_args!(
                                "safejax does not support #[serde({})]: keys are built from the fields of \
                                 the struct with #[derive(Params)], so derive it on the type serde converts \
                                 through instead",
                                path_to_string(&meta.path)
                            ),
                        );
                        skip_value(&meta)?;
                    } else if meta.path.is_ident("tag") {
                        cx.error_spanned_by(
                            &meta.path,
                            "safejax does not support #[serde(tag)] on a struct: it adds a string entry, \
                             which a param file cannot hold",
                        );
                        skip_value(&meta)?;
                    } else {
                        skip_value(&meta)?;
                    }
                    Ok(())
                });
            } else if attr.path().is_ident("safejax") {
                parse_safejax(cx, attr, |meta| {
                    if meta.path.is_ident("style") {
                        style.parse_str(&meta, |lit| lookup(cx, &lit, "style", &STYLES))?;
                    } else if meta.path.is_ident("class") {
                        class.parse_str(&meta, |lit| check_class(cx, &lit))?;
                    } else if meta.path.is_ident("crate") {
                        crate_path.parse_str(&meta, |lit| {
                            let path = lit.parse::<syn::Path>().ok();
                            if path.is_none() {
                                cx.error_spanned_by(
                                    &lit,
                                    format_args!("`crate` must be a path, not `{}`", lit.value()),
                                );
                            }
                            path
                        })?;
                    } else if ["join", "var"].iter().any(|key| meta.path.is_ident(key)) {
                        cx.error_spanned_by(
                            &meta.path,
                            format_args!(
                                "`{}` is a field attribute: put it on the field it marks",
                                path_to_string(&meta.path)
                            ),
                        );
                        skip_value(&meta)?;
                    } else {
                        unknown_key(cx, &meta, CONTAINER_KEYS)?;
                    }
                    Ok(())
                });
            }
        }

        let ident_name = unraw(&input.ident);
        let name = names.check(cx, &ident_name, "rename");
        let rename_all = rules.check(cx);

        Container {
            name,
            rename_all,
            transparent,
            default,
            style: style.get(),
            class: class.get(),
            crate_path: crate_path.get().map(|path| path.value),
        }
    }
}

impl Field {
    /// `ident_name` is the serde name before renames (the unraw identifier, or the index).
    pub fn from_ast(cx: &Ctxt, field: &syn::Field, ident_name: &str) -> Self {
        let mut join = Attr::none(cx, "join");
        let mut var = Attr::none(cx, "var");
        let mut class = Attr::none(cx, "class");
        let mut shape = Attr::none(cx, "shape");
        let mut len = Attr::none(cx, "len");
        let mut names = NamePair::default();
        let mut skip = false;
        let mut skip_serializing: Option<syn::Path> = None;
        let mut skip_deserializing: Option<syn::Path> = None;
        let mut default = false;

        for attr in &field.attrs {
            if attr.path().is_ident("serde") {
                parse_serde(attr, |meta| {
                    if meta.path.is_ident("rename") {
                        names.parse(&meta)?;
                    } else if meta.path.is_ident("skip") {
                        skip = true;
                    } else if meta.path.is_ident("skip_serializing") {
                        skip_serializing = Some(meta.path.clone());
                    } else if meta.path.is_ident("skip_deserializing") {
                        skip_deserializing = Some(meta.path.clone());
                    } else if meta.path.is_ident("default") {
                        default = true;
                        skip_value(&meta)?;
                    } else if meta.path.is_ident("flatten") {
                        cx.error_spanned_by(
                            &meta.path,
                            "safejax does not support #[serde(flatten)]: a flattened struct's fields \
                             would lose the style and marks of the struct that holds them",
                        );
                    } else {
                        skip_value(&meta)?;
                    }
                    Ok(())
                });
            } else if attr.path().is_ident("safejax") {
                parse_safejax(cx, attr, |meta| {
                    if meta.path.is_ident("join") {
                        join.parse_str(&meta, |lit| lookup(cx, &lit, "join", &JOINS))?;
                    } else if meta.path.is_ident("var") {
                        var.parse_str(&meta, |lit| lookup(cx, &lit, "var", &VARS))?;
                    } else if meta.path.is_ident("class") {
                        class.parse_str(&meta, |lit| check_class(cx, &lit))?;
                    } else if meta.path.is_ident("shape") {
                        shape.seen(&meta.path);
                        if let Some(dims) = parse_shape(cx, &meta)? {
                            shape.set(&meta.path, dims);
                        }
                    } else if meta.path.is_ident("len") {
                        len.seen(&meta.path);
                        if let Some(n) = parse_len(cx, &meta)? {
                            len.set(&meta.path, n);
                        }
                    } else if ["style", "crate"].iter().any(|key| meta.path.is_ident(key)) {
                        cx.error_spanned_by(
                            &meta.path,
                            format_args!(
                                "`{}` is a struct attribute: put it on the struct",
                                path_to_string(&meta.path)
                            ),
                        );
                        skip_value(&meta)?;
                    } else {
                        unknown_key(cx, &meta, FIELD_KEYS)?;
                    }
                    Ok(())
                });
            }
        }

        // A param file is written and read by the same type: a field skipped one way only would
        // be written and then missing on read, or expected on read and never written.
        match (&skip_serializing, &skip_deserializing) {
            (Some(_), Some(_)) => skip = true,
            (Some(path), None) | (None, Some(path)) if !skip => {
                let (given, missing) = if skip_serializing.is_some() {
                    ("skip_serializing", "skip_deserializing")
                } else {
                    ("skip_deserializing", "skip_serializing")
                };
                cx.error_spanned_by(
                    path,
                    format_args!(
                        "`{given}` without `{missing}`: a param file must be written and read alike, \
                         so skip the field both ways with #[serde(skip)]"
                    ),
                );
            }
            _ => {}
        }

        let renamed = names.is_set();
        let name = names.check(cx, ident_name, "rename");
        Field {
            name,
            renamed,
            skip,
            default,
            join: join.get(),
            var: var.get(),
            class: class.get(),
            shape: shape.get(),
            len: len.get(),
        }
    }
}

/// The dimensions of `shape = [192, d_model, _]`; `None` (with errors recorded, one per bad
/// dimension) for anything else.
fn parse_shape(cx: &Ctxt, meta: &ParseNestedMeta) -> syn::Result<Option<Vec<Dim>>> {
    const EXPECTED: &str = "expected `shape = [...]`: a list of sizes (`192`), names (`d_model`) or `_`";
    let Some(expr) = get_expr(cx, meta, EXPECTED)? else {
        return Ok(None);
    };
    let Expr::Array(array) = ungrouped(&expr) else {
        cx.error_spanned_by(&expr, EXPECTED);
        return Ok(None);
    };
    let mut dims = Vec::with_capacity(array.elems.len());
    let mut valid = true;
    for elem in &array.elems {
        let dim = match elem {
            Expr::Lit(ExprLit { lit: Lit::Int(int), .. }) if int.suffix().is_empty() => {
                int.base10_parse::<usize>().ok().map(Dim::Fixed)
            }
            Expr::Path(path) if path.qself.is_none() && path.attrs.is_empty() => {
                path.path.get_ident().map(|ident| Dim::Named(unraw(ident)))
            }
            Expr::Infer(_) => Some(Dim::Any),
            _ => None,
        };
        match dim {
            Some(dim) => dims.push(dim),
            None => {
                valid = false;
                cx.error_spanned_by(
                    elem,
                    "a dimension of `shape` is a size (`192`), a name (`d_model`) or `_`",
                );
            }
        }
    }
    Ok(valid.then_some(dims))
}

/// The length of `len = 48`; `None` (with an error recorded) for anything else. `len = 0` is
/// refused: a list that must be empty holds no keys, so the field would describe nothing.
fn parse_len(cx: &Ctxt, meta: &ParseNestedMeta) -> syn::Result<Option<usize>> {
    const EXPECTED: &str = "expected `len = N`: the number of elements of the `Vec`, at least 1";
    let Some(expr) = get_expr(cx, meta, EXPECTED)? else {
        return Ok(None);
    };
    let len = match ungrouped(&expr) {
        Expr::Lit(ExprLit { lit: Lit::Int(int), .. }) if int.suffix().is_empty() => int.base10_parse::<usize>().ok(),
        _ => None,
    };
    match len {
        Some(n) if n > 0 => Ok(Some(n)),
        _ => {
            cx.error_spanned_by(&expr, EXPECTED);
            Ok(None)
        }
    }
}

/// `rename = "..."` or `rename(serialize = "...", deserialize = "...")`, which must agree.
#[derive(Default)]
struct NamePair {
    serialize: Option<LitStr>,
    deserialize: Option<LitStr>,
    /// The tokens of the attribute, for the disagreement error.
    tokens: Option<TokenStream>,
}

impl NamePair {
    fn parse(&mut self, meta: &ParseNestedMeta) -> syn::Result<()> {
        let (ser, de) = parse_ser_de(meta)?;
        self.tokens = Some(meta.path.to_token_stream());
        if ser.is_some() {
            self.serialize = ser;
        }
        if de.is_some() {
            self.deserialize = de;
        }
        Ok(())
    }

    fn is_set(&self) -> bool {
        self.serialize.is_some() || self.deserialize.is_some()
    }

    /// The one name both ways; an error if serialize and deserialize differ.
    fn check(self, cx: &Ctxt, default: &str, key: &str) -> String {
        let ser = self.serialize.map_or_else(|| default.to_owned(), |lit| lit.value());
        let de = self.deserialize.map_or_else(|| default.to_owned(), |lit| lit.value());
        if ser != de {
            cx.error_spanned_by(
                self.tokens,
                format_args!(
                    "safejax needs the same name to serialize and deserialize, but `{key}` gives \
                     `{ser}` and `{de}`: a param file is written and read with the same keys"
                ),
            );
        }
        ser
    }
}

/// `rename_all = "..."` or `rename_all(serialize = "...", deserialize = "...")`, which must agree.
#[derive(Default)]
struct RulePair {
    serialize: Option<RenameRule>,
    deserialize: Option<RenameRule>,
    tokens: Option<TokenStream>,
}

impl RulePair {
    fn parse(&mut self, meta: &ParseNestedMeta) -> syn::Result<()> {
        let (ser, de) = parse_ser_de(meta)?;
        self.tokens = Some(meta.path.to_token_stream());
        // An unknown rule is serde_derive's error to report; read it as no rule.
        let rule = |lit: LitStr| RenameRule::from_str(&lit.value()).unwrap_or(RenameRule::None);
        if let Some(ser) = ser {
            self.serialize = Some(rule(ser));
        }
        if let Some(de) = de {
            self.deserialize = Some(rule(de));
        }
        Ok(())
    }

    fn check(self, cx: &Ctxt) -> RenameRule {
        let ser = self.serialize.unwrap_or(RenameRule::None);
        let de = self.deserialize.unwrap_or(RenameRule::None);
        if ser != de {
            cx.error_spanned_by(
                self.tokens,
                "safejax needs the same `rename_all` rule to serialize and deserialize: a param file \
                 is written and read with the same keys",
            );
        }
        ser
    }
}

/// The string values of `key = "..."` (both ways) or `key(serialize = "...", deserialize = "...")`.
fn parse_ser_de(meta: &ParseNestedMeta) -> syn::Result<(Option<LitStr>, Option<LitStr>)> {
    if meta.input.peek(Token![=]) {
        let lit: LitStr = meta.value()?.parse()?;
        return Ok((Some(lit.clone()), Some(lit)));
    }
    let mut ser = None;
    let mut de = None;
    meta.parse_nested_meta(|inner| {
        if inner.path.is_ident("serialize") {
            ser = Some(inner.value()?.parse()?);
        } else if inner.path.is_ident("deserialize") {
            de = Some(inner.value()?.parse()?);
        } else {
            skip_value(&inner)?;
        }
        Ok(())
    })?;
    Ok((ser, de))
}

/// Parses one `#[serde(...)]` attribute, ignoring its syntax errors: serde_derive reports them,
/// and reporting them twice would only add noise.
fn parse_serde(attr: &syn::Attribute, f: impl FnMut(ParseNestedMeta) -> syn::Result<()>) {
    let _ = attr.parse_nested_meta(f);
}

/// Parses one `#[safejax(...)]` attribute; a syntax error ends this attribute and is recorded.
fn parse_safejax(cx: &Ctxt, attr: &syn::Attribute, f: impl FnMut(ParseNestedMeta) -> syn::Result<()>) {
    if let Err(err) = attr.parse_nested_meta(f) {
        cx.syn_error(err);
    }
}

/// Consumes the value of a key this parser does not need: `= anything` up to the next comma, or a
/// parenthesized list (serde's `bound(...)`, `rename(...)`).
fn skip_value(meta: &ParseNestedMeta) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        meta.input.parse::<Token![=]>()?;
    }
    while !meta.input.is_empty() && !meta.input.peek(Token![,]) {
        meta.input.parse::<TokenTree>()?;
    }
    Ok(())
}

/// Records an unknown `#[safejax]` key and skips its value, so that parsing goes on.
fn unknown_key(cx: &Ctxt, meta: &ParseNestedMeta, expected: &str) -> syn::Result<()> {
    cx.error_spanned_by(
        &meta.path,
        format_args!(
            "unknown safejax attribute `{}`, expected one of {expected}",
            path_to_string(&meta.path)
        ),
    );
    skip_value(meta)
}

fn path_to_string(path: &syn::Path) -> String {
    path.to_token_stream().to_string().replace(' ', "")
}

/// The value of `key = <expression>`; `None` (with `expected` recorded) without a value.
fn get_expr(cx: &Ctxt, meta: &ParseNestedMeta, expected: &str) -> syn::Result<Option<Expr>> {
    if !meta.input.peek(Token![=]) {
        cx.error_spanned_by(&meta.path, expected);
        skip_value(meta)?;
        return Ok(None);
    }
    Ok(Some(meta.value()?.parse()?))
}

/// `expr` without the invisible groups that `macro_rules!` may wrap a value in.
fn ungrouped(mut expr: &Expr) -> &Expr {
    while let Expr::Group(group) = expr {
        expr = &group.expr;
    }
    expr
}

/// The string literal of `key = "..."`; `None` (with an error recorded) for any other value.
fn get_str(cx: &Ctxt, key: &str, meta: &ParseNestedMeta) -> syn::Result<Option<LitStr>> {
    let expected = format!("expected `{key}` to be a string: `{key} = \"...\"`");
    let Some(expr) = get_expr(cx, meta, &expected)? else {
        return Ok(None);
    };
    if let Expr::Lit(ExprLit { lit: Lit::Str(lit), .. }) = ungrouped(&expr) {
        if !lit.suffix().is_empty() {
            cx.error_spanned_by(
                lit,
                format_args!("unexpected suffix `{}` on string literal", lit.suffix()),
            );
            return Ok(None);
        }
        return Ok(Some(lit.clone()));
    }
    cx.error_spanned_by(expr, expected);
    Ok(None)
}

/// The value named by `lit` in `table`; `None` (with an error listing the names) otherwise.
fn lookup(cx: &Ctxt, lit: &LitStr, key: &str, names: &[&'static str]) -> Option<&'static str> {
    let name = lit.value();
    if let Some(found) = names.iter().find(|n| **n == name) {
        return Some(found);
    }
    let expected = names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
    cx.error_spanned_by(lit, format_args!("unknown {key} `{name}`, expected one of {expected}"));
    None
}

/// An objax class as shown in keys: `(MLP)`, `(ModuleList)[0]`. Characters that delimit those
/// keys would make them unreadable, so they are refused here rather than at run time.
fn check_class(cx: &Ctxt, lit: &LitStr) -> Option<String> {
    let class = lit.value();
    if class.is_empty() {
        cx.error_spanned_by(lit, "`class` must not be empty");
        return None;
    }
    if class.chars().any(|c| c.is_whitespace() || "()[].:".contains(c)) {
        cx.error_spanned_by(
            lit,
            format_args!(
                "invalid class `{class}`: a class cannot contain whitespace, `(`, `)`, `[`, `]`, `.` \
                 or `:`, which delimit objax keys"
            ),
        );
        return None;
    }
    Some(class)
}
