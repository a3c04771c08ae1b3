//! Checks planned structs against the file's keys before they are printed: the plan becomes the
//! schema that `#[derive(Params)]` would emit for the printed structs, and the library reads the
//! file's keys with it as a load would (`safejax::__private::keys::check_keys`). Structs that pass
//! read every key of the file and no other, and write each key back as it was.

use safejax::__private::keys::check_keys;
use safejax::__private::{
    FieldSchema, Join, LeafSchema, MapKey, MapSchema, ObjaxVar, Schema, SchemaRef, SeqSchema, StructSchema,
};
use safejax::Error;

use super::infer::LeafTy;
use super::plan::{PTy, Plan};

/// What reading the file with the planned structs would do.
pub struct Outcome {
    /// objax keys without `::VarType` in the file, which writing back adds.
    pub without_var: Vec<String>,
}

/// Reads `keys` with the plan as `safejax` would; an error naming the keys that would be missing,
/// partly present or left over.
pub fn check(plan: &Plan, keys: &[&str]) -> Result<Outcome, String> {
    let schema = Schemas::new(plan).ty(&PTy::Struct(0));
    let show = |v: &[String]| {
        v.iter()
            .take(3)
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match check_keys(schema, keys) {
        Ok(respelled) => Ok(Outcome {
            without_var: respelled.into_iter().map(|(i, _)| keys[i].to_owned()).collect(),
        }),
        Err(Error::MissingKeys { keys, .. }) => Err(format!(
            "the structs would look for keys the file lacks: {}",
            show(&keys)
        )),
        Err(Error::PartlyPresent { key, .. }) => Err(format!("optional parts would be partly present: `{key}`")),
        Err(Error::UnknownKeys { keys, .. }) => Err(format!("the structs would not read {}", show(&keys))),
        Err(other) => Err(other.to_string()),
    }
}

/// The schemas of a plan's structs, made once each. They live as long as the process: the CLI
/// checks one plan per run, and the library's schemas are `'static`.
struct Schemas<'p> {
    plan: &'p Plan,
    structs: Vec<Option<&'static Schema>>,
}

impl<'p> Schemas<'p> {
    fn new(plan: &'p Plan) -> Self {
        Schemas {
            plan,
            structs: vec![None; plan.structs.len()],
        }
    }

    fn ty(&mut self, ty: &PTy) -> &'static Schema {
        match ty {
            PTy::Leaf(leaf) => leak(leaf_schema(leaf)),
            PTy::Map(leaf) => leak(Schema::Map(MapSchema {
                value: SchemaRef::from_static(leak(leaf_schema(leaf))),
                key: MapKey::Name,
            })),
            PTy::Vec(element) => {
                let element = SchemaRef::from_static(self.ty(element));
                leak(Schema::Seq(SeqSchema { element, len: None }))
            }
            PTy::Option(inner) => leak(Schema::Option(SchemaRef::from_static(self.ty(inner)))),
            PTy::Struct(id) => {
                if let Some(schema) = self.structs[*id] {
                    return schema;
                }
                let s = &self.plan.structs[*id];
                let fields: Vec<FieldSchema> = s
                    .fields
                    .iter()
                    .map(|f| FieldSchema {
                        name: leak_str(&f.name),
                        schema: SchemaRef::from_static(self.ty(&f.ty)),
                        optional: false,
                        join: f.slash.then_some(Join::Slash),
                        var: f.var.as_deref().and_then(ObjaxVar::parse),
                        class: f.list_class.as_deref().map(leak_str),
                    })
                    .collect();
                let schema = leak(Schema::Struct(StructSchema {
                    name: leak_str(&s.name),
                    style: s.style_attr,
                    class: s.class_attr().map(leak_str),
                    fields: fields.leak(),
                }));
                self.structs[*id] = Some(schema);
                schema
            }
        }
    }
}

fn leaf_schema(leaf: &LeafTy) -> Schema {
    Schema::Leaf(LeafSchema {
        dtype: leaf.dtype,
        rank: leaf.scalar.then_some(0),
    })
}

fn leak(schema: Schema) -> &'static Schema {
    Box::leak(Box::new(schema))
}

fn leak_str(s: &str) -> &'static str {
    s.to_owned().leak()
}
