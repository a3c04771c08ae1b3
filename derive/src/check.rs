//! Misuse of `#[safejax]` that the derive can see from the struct alone.
//!
//! Each mark means something in one key style only. Where a struct names its style, a mark for
//! another style would be silently ignored when keys are built, so it is an error here. A struct
//! without `style` takes its parent's at run time, so its marks cannot be checked against a style.
//! What needs the field's type (is it a tensor, a list?) is checked by constants in the generated
//! code instead, see `expand`.

use crate::ast::{Body, Input};
use crate::ctxt::Ctxt;

pub fn check(cx: &Ctxt, input: &Input) {
    let struct_name = input.ident.to_string();
    match &input.body {
        Body::Transparent(field, wrapper) => {
            let attrs = &input.attrs;
            let container_keys = [
                attrs.style.as_ref().map(|s| ("style", s.span())),
                attrs.class.as_ref().map(|s| ("class", s.span())),
            ];
            for (key, span) in container_keys.into_iter().flatten() {
                cx.error_at(
                    span,
                    format_args!(
                        "`{key}` has no effect on {}: its keys are those of the field it wraps",
                        wrapper.describe()
                    ),
                );
            }
            for (key, span) in field_marks(&field.attrs) {
                cx.error_at(
                    span,
                    format_args!(
                        "`{key}` has no effect on the field of {}: mark the field that holds \
                         `{struct_name}` instead",
                        wrapper.describe()
                    ),
                );
            }
        }
        Body::Struct(fields) => {
            let style = input.attrs.style.as_ref().map(|s| s.value);
            let only_for = |key: &str, wanted: &str, span| {
                if let Some(style) = style.filter(|style| *style != wanted) {
                    cx.error_at(
                        span,
                        format_args!(
                            "`{key}` is only used by {} keys, but `{struct_name}` has style `{}`",
                            wanted, style
                        ),
                    );
                }
            };
            if let Some(class) = &input.attrs.class {
                only_for("class", "objax", class.span());
            }
            for field in fields {
                let attrs = &field.attrs;
                if attrs.skip {
                    for (key, span) in field_marks(attrs) {
                        cx.error_at(
                            span,
                            format_args!("`{key}` has no effect on field `{}`, which serde skips", field.display),
                        );
                    }
                    continue;
                }
                if let Some(join) = &attrs.join {
                    only_for("join", "haiku", join.span());
                }
                if let Some(var) = &attrs.var {
                    only_for("var", "objax", var.span());
                }
                if let Some(class) = &attrs.class {
                    only_for("class", "objax", class.span());
                }
                // With an explicit style, the checks above already reject one of the two.
                if let (None, Some(_)) = (style, &attrs.join) {
                    let objax_marks = [
                        attrs.var.as_ref().map(|m| ("var", "objax tensors", m.span())),
                        attrs.class.as_ref().map(|m| ("class", "objax lists", m.span())),
                    ];
                    for (key, what, span) in objax_marks.into_iter().flatten() {
                        cx.error_at(
                            span,
                            format_args!(
                                "`join` and `{key}` cannot mark the same field: `join` is for haiku \
                                 submodules, `{key}` for {what} (field `{}`)",
                                field.display
                            ),
                        );
                    }
                }
            }
        }
    }
}

/// The `#[safejax]` marks on a field, with their spans.
fn field_marks(attrs: &crate::attr::Field) -> impl Iterator<Item = (&'static str, proc_macro2::Span)> {
    [
        attrs.join.as_ref().map(|s| ("join", s.span())),
        attrs.var.as_ref().map(|s| ("var", s.span())),
        attrs.class.as_ref().map(|s| ("class", s.span())),
        attrs.shape.as_ref().map(|s| ("shape", s.span())),
        attrs.len.as_ref().map(|s| ("len", s.span())),
    ]
    .into_iter()
    .flatten()
}
