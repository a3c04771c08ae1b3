//! The shape of the input, after attributes: which structs the derive accepts, and how.

use proc_macro2::Span;

use crate::attr;
use crate::ctxt::Ctxt;

/// A struct the derive accepts.
pub struct Input<'a> {
    pub ident: &'a syn::Ident,
    pub generics: &'a syn::Generics,
    pub attrs: attr::Container,
    pub body: Body<'a>,
}

/// What the schema of the struct is made of.
pub enum Body<'a> {
    /// A struct with named fields: its own `Schema::Struct`.
    Struct(Vec<Field<'a>>),
    /// A newtype struct, or a `#[serde(transparent)]` struct: serde hands the serializer the one
    /// field directly (a format sees a newtype struct only as a wrapper), so the schema is the
    /// field's.
    Transparent(Box<Field<'a>>, Wrapper),
}

/// Why a struct's schema is its field's.
#[derive(Clone, Copy)]
pub enum Wrapper {
    Newtype,
    SerdeTransparent,
}

impl Wrapper {
    /// How messages call the struct.
    pub fn describe(self) -> &'static str {
        match self {
            Wrapper::Newtype => "a newtype struct",
            Wrapper::SerdeTransparent => "a #[serde(transparent)] struct",
        }
    }
}

/// A field and its attributes.
pub struct Field<'a> {
    /// The field as the user wrote it, for messages: its identifier, or its index.
    pub display: String,
    pub ty: &'a syn::Type,
    pub attrs: attr::Field,
}

impl<'a> Input<'a> {
    /// The input, or `None` when the derive does not apply (the errors are in `cx`).
    pub fn from_ast(cx: &Ctxt, input: &'a syn::DeriveInput) -> Option<Self> {
        let data = match &input.data {
            syn::Data::Struct(data) => data,
            syn::Data::Enum(data) => {
                cx.error_at(
                    data.enum_token.span,
                    "`Params` can be derived only for structs with named fields, not for enums: \
                     safetensors keys are built from field names",
                );
                return None;
            }
            syn::Data::Union(data) => {
                cx.error_at(
                    data.union_token.span,
                    "`Params` can be derived only for structs with named fields, not for unions",
                );
                return None;
            }
        };

        let attrs = attr::Container::from_ast(cx, input);
        let fields: Vec<Field<'a>> = data
            .fields
            .iter()
            .enumerate()
            .map(|(i, field)| {
                let display = match &field.ident {
                    Some(ident) => attr::unraw(ident),
                    None => i.to_string(),
                };
                let mut field_attrs = attr::Field::from_ast(cx, field, &display);
                if !field_attrs.renamed {
                    field_attrs.name = attrs.rename_all.apply_to_field(&field_attrs.name);
                }
                Field {
                    display,
                    ty: &field.ty,
                    attrs: field_attrs,
                }
            })
            .collect();

        let body = match &data.fields {
            syn::Fields::Named(_) => {
                let kept = fields.iter().filter(|f| !f.attrs.skip).count();
                if attrs.transparent && kept == 1 {
                    let field = fields.into_iter().find(|f| !f.attrs.skip).unwrap();
                    Body::Transparent(Box::new(field), Wrapper::SerdeTransparent)
                } else {
                    // A transparent struct without exactly one kept field is serde_derive's error.
                    Body::Struct(fields)
                }
            }
            syn::Fields::Unnamed(unnamed) => {
                let kept = fields.iter().filter(|f| !f.attrs.skip).count();
                if fields.len() == 1 {
                    let wrapper = if attrs.transparent {
                        Wrapper::SerdeTransparent
                    } else {
                        Wrapper::Newtype
                    };
                    Body::Transparent(Box::new(fields.into_iter().next().unwrap()), wrapper)
                } else if attrs.transparent && kept == 1 {
                    let field = fields.into_iter().find(|f| !f.attrs.skip).unwrap();
                    Body::Transparent(Box::new(field), Wrapper::SerdeTransparent)
                } else {
                    let span = if unnamed.unnamed.is_empty() {
                        input.ident.span()
                    } else {
                        unnamed.paren_token.span.join()
                    };
                    tuple_error(cx, span);
                    return None;
                }
            }
            syn::Fields::Unit => {
                cx.error_at(
                    input.ident.span(),
                    "`Params` can be derived only for structs with named fields and newtype \
                     structs; a unit struct holds no params",
                );
                return None;
            }
        };

        Some(Input {
            ident: &input.ident,
            generics: &input.generics,
            attrs,
            body,
        })
    }

    /// The fields that the schema describes: all but serde-skipped ones.
    pub fn described_fields(&self) -> Box<dyn Iterator<Item = &Field<'a>> + '_> {
        match &self.body {
            Body::Struct(fields) => Box::new(fields.iter().filter(|field| !field.attrs.skip)),
            Body::Transparent(field, _) => Box::new(std::iter::once(&**field)),
        }
    }

    /// Whether the struct has type or const parameters: then field types depend on them, and the
    /// derive cannot check their leafiness in a constant of its own.
    pub fn is_generic(&self) -> bool {
        self.generics
            .params
            .iter()
            .any(|param| !matches!(param, syn::GenericParam::Lifetime(_)))
    }
}

fn tuple_error(cx: &Ctxt, span: Span) {
    cx.error_at(
        span,
        "`Params` can be derived only for structs with named fields and newtype structs; the \
         fields of a tuple struct have no names to build keys from",
    );
}
