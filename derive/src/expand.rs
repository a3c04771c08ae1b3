//! Code generation: the `Params` impl and the compile-time checks of field marks.

use proc_macro2::{Group, Ident, TokenStream, TokenTree};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;

use crate::ast::{Body, Field, Input};
use crate::attr::Dim;
use crate::check;
use crate::ctxt::Ctxt;

/// The whole derive: parse, check, generate. All errors found come back together.
pub fn derive(input: &syn::DeriveInput) -> syn::Result<TokenStream> {
    let cx = Ctxt::new();
    let parsed = Input::from_ast(&cx, input);
    if let Some(parsed) = &parsed {
        check::check(&cx, parsed);
    }
    cx.check()?;
    let parsed = parsed.expect("`Input::from_ast` records an error whenever it returns None");
    Ok(generate(&parsed))
}

fn generate(input: &Input) -> TokenStream {
    let krate = match &input.attrs.crate_path {
        Some(path) => path.to_token_stream(),
        None => quote!(::safejax),
    };
    let ident = input.ident;

    // A type parameter that a described field's type mentions must be `Params` for that field to
    // be (the same heuristic as serde_derive's bounds). One that only skipped fields mention, a
    // `PhantomData<B>` marker say, needs no bound. serde's own `bound` attributes are about
    // serde's traits and do not apply here.
    let mut generics = input.generics.clone();
    let field_types: Vec<TokenStream> = input
        .described_fields()
        .map(|field| field.ty.to_token_stream())
        .collect();
    let bounded: Vec<Ident> = generics
        .type_params()
        .map(|param| param.ident.clone())
        .filter(|param| field_types.iter().any(|ty| mentions(ty.clone(), param)))
        .collect();
    if !bounded.is_empty() {
        let where_clause = generics.make_where_clause();
        for param in bounded {
            where_clause.predicates.push(syn::parse_quote!(#param: #krate::Params));
        }
    }
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();

    let (items, asserts) = match &input.body {
        Body::Transparent(field, _) => {
            let ty = field.ty;
            let items = quote_spanned! {ty.span()=>
                const SCHEMA: &'static #krate::__private::Schema = <#ty as #krate::Params>::SCHEMA;
                const IS_LEAFY: bool = <#ty as #krate::Params>::IS_LEAFY;
                const IS_LIST: bool = <#ty as #krate::Params>::IS_LIST;
            };
            (items, Vec::new())
        }
        Body::Struct(fields) => {
            let name = &input.attrs.name;
            let style = option(input.attrs.style.as_ref().map(|style| {
                let name = style.value;
                quote!(#krate::__private::Style::from_name(#name))
            }));
            let class = option(input.attrs.class.as_ref().map(|class| {
                let class = &class.value;
                quote!(#class)
            }));
            let default = input.attrs.default;
            let kept: Vec<&Field> = fields.iter().filter(|f| !f.attrs.skip).collect();
            let field_schemas = kept.iter().map(|field| field_schema(&krate, field, default));
            let items = quote! {
                const SCHEMA: &'static #krate::__private::Schema =
                    &#krate::__private::Schema::Struct(#krate::__private::StructSchema {
                        name: #name,
                        style: #style,
                        class: #class,
                        fields: &[#(#field_schemas),*],
                    });
            };
            // In a generic struct a field's type may depend on the parameters, which a free
            // constant cannot name; such marks are checked nowhere but in the keys.
            let asserts = if input.is_generic() {
                Vec::new()
            } else {
                kept.iter()
                    .flat_map(|field| field_asserts(&krate, input, field))
                    .collect()
            };
            (items, asserts)
        }
    };

    quote! {
        #[doc(hidden)]
        #[allow(non_upper_case_globals, unused_attributes, unused_qualifications)]
        const _: () = {
            #[automatically_derived]
            impl #impl_generics #krate::Params for #ident #ty_generics #where_clause {
                #items
            }
            #(#asserts)*
        };
    }
}

/// One `FieldSchema` literal.
fn field_schema(krate: &TokenStream, field: &Field, container_default: bool) -> TokenStream {
    let attrs = &field.attrs;
    let name = &attrs.name;
    let ty = field.ty;
    // Spanned on the field's type: a type that is not `Params` is reported there, with the
    // trait's `on_unimplemented` message.
    let schema = match &attrs.len {
        // The schema of `[T; N]` is `Vec<T>`'s with the length that loads and writes check. The
        // element is named through a trait that only `Vec` has, spanned on `len`: on another type
        // the error says what `len` needs.
        Some(len) => {
            let n = len.value;
            let element = quote_spanned!(len.span()=> <#ty as #krate::__private::VecElement>::Element);
            quote_spanned!(len.span()=> #krate::__private::SchemaRef::new(<[#element; #n] as #krate::Params>::schema))
        }
        None => quote_spanned!(ty.span()=> #krate::__private::SchemaRef::new(<#ty as #krate::Params>::schema)),
    };
    let optional = container_default || attrs.default;
    let join = option(attrs.join.as_ref().map(|join| {
        let separator = join.value;
        quote!(#krate::__private::Join::from_separator(#separator))
    }));
    let var = option(attrs.var.as_ref().map(|var| {
        let name = var.value;
        quote!(#krate::__private::ObjaxVar::from_name(#name))
    }));
    let class = option(attrs.class.as_ref().map(|class| {
        let class = &class.value;
        quote!(#class)
    }));
    let shape = option(attrs.shape.as_ref().map(|shape| {
        let dims = shape.value.iter().map(|dim| match dim {
            Dim::Fixed(size) => quote!(#krate::__private::Dim::Fixed(#size)),
            Dim::Named(name) => quote!(#krate::__private::Dim::Named(#name)),
            Dim::Any => quote!(#krate::__private::Dim::Any),
        });
        quote!(&[#(#dims),*])
    }));
    quote! {
        #krate::__private::FieldSchema {
            name: #name,
            schema: #schema,
            optional: #optional,
            join: #join,
            var: #var,
            class: #class,
            shape: #shape,
        }
    }
}

/// Constants that fail to compile when a mark does not fit the field's type, spanned on the mark.
///
/// `IS_LEAFY` and `IS_LIST` are associated constants, known only once the type is; a free `const`
/// is evaluated whenever the crate compiles, so the error appears at the definition of the struct
/// rather than at the first save or load.
fn field_asserts(krate: &TokenStream, input: &Input, field: &Field) -> Vec<TokenStream> {
    let attrs = &field.attrs;
    let ident = input.ident;
    let lifetime_count = input.generics.lifetimes().count();
    let ty = for_free_const(field.ty.to_token_stream(), ident, lifetime_count);
    let (field_name, struct_name) = (&field.display, ident.to_string());
    let mut asserts = Vec::new();
    if let Some(join) = &attrs.join {
        let msg = format!("`join` marks a submodule, but field `{field_name}` of `{struct_name}` holds tensors");
        asserts.push(quote_spanned! {join.span()=>
            const _: () = ::core::assert!(!<#ty as #krate::Params>::IS_LEAFY, #msg);
        });
    }
    if let Some(var) = &attrs.var {
        let msg = format!("`var` marks tensors, but field `{field_name}` of `{struct_name}` holds modules");
        asserts.push(quote_spanned! {var.span()=>
            const _: () = ::core::assert!(<#ty as #krate::Params>::IS_LEAFY, #msg);
        });
    }
    if let Some(shape) = &attrs.shape {
        let msg =
            format!("`shape` declares the shape of tensors, but field `{field_name}` of `{struct_name}` holds modules");
        asserts.push(quote_spanned! {shape.span()=>
            const _: () = ::core::assert!(<#ty as #krate::Params>::IS_LEAFY, #msg);
        });
    }
    if let Some(class) = &attrs.class {
        let msg = format!(
            "`class` on a field names an objax list class, but field `{field_name}` of \
             `{struct_name}` is not a list"
        );
        asserts.push(quote_spanned! {class.span()=>
            const _: () = ::core::assert!(<#ty as #krate::Params>::IS_LIST, #msg);
        });
    }
    asserts
}

/// A field type made nameable outside the impl: its lifetimes become `'static` (a free constant
/// has no lifetime parameters; the marks' checks do not depend on lifetimes) and `Self` becomes
/// the struct's name, with `'static` for its lifetime parameters (it has no other parameters).
fn for_free_const(tokens: TokenStream, ident: &Ident, lifetime_count: usize) -> TokenStream {
    let mut out = TokenStream::new();
    let mut iter = tokens.into_iter();
    while let Some(tree) = iter.next() {
        match tree {
            TokenTree::Punct(punct) if punct.as_char() == '\'' => {
                out.extend([TokenTree::Punct(punct)]);
                if let Some(TokenTree::Ident(lifetime)) = iter.next() {
                    out.extend([TokenTree::Ident(Ident::new("static", lifetime.span()))]);
                }
            }
            TokenTree::Ident(self_ty) if self_ty == "Self" => {
                let name = Ident::new(&ident.to_string(), self_ty.span());
                let lifetimes = lifetime_count;
                if lifetimes == 0 {
                    out.extend(quote!(#name));
                } else {
                    let statics = std::iter::repeat_n(quote!('static), lifetimes);
                    out.extend(quote!(#name<#(#statics),*>));
                }
            }
            TokenTree::Group(group) => {
                let mut new = Group::new(group.delimiter(), for_free_const(group.stream(), ident, lifetime_count));
                new.set_span(group.span());
                out.extend([TokenTree::Group(new)]);
            }
            other => out.extend([other]),
        }
    }
    out
}

/// Whether `tokens` contain the identifier `ident`.
fn mentions(tokens: TokenStream, ident: &Ident) -> bool {
    tokens.into_iter().any(|tree| match tree {
        TokenTree::Ident(found) => found == *ident,
        TokenTree::Group(group) => mentions(group.stream(), ident),
        _ => false,
    })
}

fn option(value: Option<TokenStream>) -> TokenStream {
    match value {
        Some(value) => quote!(::core::option::Option::Some(#value)),
        None => quote!(::core::option::Option::None),
    }
}

#[cfg(test)]
mod tests {
    use proc_macro2::{Ident, Span};
    use quote::quote;

    use super::{for_free_const, mentions};

    fn ident(name: &str) -> Ident {
        Ident::new(name, Span::call_site())
    }

    /// Token streams compared without spacing (`>>` and `> >` are the same tokens here).
    fn squash(tokens: proc_macro2::TokenStream) -> String {
        tokens.to_string().replace(' ', "")
    }

    #[test]
    fn free_const_types_drop_lifetimes_and_self() {
        let ty = quote!(Vec<(TensorView<'a, f32>, &'b Self, Option<Box<Self>>)>);
        assert_eq!(
            squash(for_free_const(ty, &ident("Layer"), 2)),
            "Vec<(TensorView<'static,f32>,&'staticLayer<'static,'static>,Option<Box<Layer<'static,'static>>>)>"
        );
        assert_eq!(squash(for_free_const(quote!(Vec<Self>), &ident("Mlp"), 0)), "Vec<Mlp>");
    }

    #[test]
    fn mentions_finds_nested_identifiers() {
        let t = ident("T");
        assert!(mentions(quote!(T), &t));
        assert!(mentions(quote!(Vec<Option<T>>), &t));
        assert!(mentions(quote!([T; 3]), &t));
        assert!(mentions(quote!((f32, T)), &t));
        assert!(!mentions(quote!(Tensor<f32>), &t));
        assert!(!mentions(quote!(Tt<U>), &t));
    }
}
