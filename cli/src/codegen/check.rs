//! Checks planned structs against the file's keys before they are printed: the plan becomes the
//! schema that `#[derive(Params)]` would emit for the printed structs, and the library reads the
//! file's keys with it as a load would (`safejax::__private::keys::check_keys`). Structs that pass
//! read every key of the file and no other, and write each key back as it was.

use std::collections::HashMap;

use safejax::__private::keys::{check_keys, field_contents};
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
    /// What the file shows of each planned field.
    pub facts: Facts,
}

/// What the file shows of each planned field, by (struct, field) index.
pub type Facts = HashMap<(usize, usize), FieldFacts>;

/// What the file shows of one planned field, over every place its struct is used: what the
/// printed field can declare (`#[safejax(shape = [...])]`, a fixed-length array).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldFacts {
    /// The shape of every leaf of the field, `None` at a dimension where leaves differ; `None`
    /// when their ranks differ.
    pub shape: Option<Vec<Option<usize>>>,
    /// By list depth (0: the field's own list), the length of every list there, or `None` where
    /// lengths differ.
    pub lens: Vec<Option<usize>>,
}

impl FieldFacts {
    /// Adds leaves and lists seen at another place of the field; `seen` says whether any leaf was
    /// before.
    fn merge(&mut self, seen: bool, shapes: &[&[usize]], lists: &[(usize, usize)]) {
        let mut shapes = shapes.iter();
        if !seen {
            self.shape = shapes.next().map(|s| s.iter().copied().map(Some).collect());
        }
        for found in shapes {
            self.shape = self.shape.take().filter(|s| s.len() == found.len()).map(|s| {
                s.into_iter()
                    .zip(found.iter())
                    .map(|(dim, &size)| dim.filter(|&d| d == size))
                    .collect()
            });
        }
        for &(depth, len) in lists {
            if self.lens.len() <= depth {
                self.lens.resize(depth + 1, Some(len));
            }
            self.lens[depth] = self.lens[depth].filter(|&l| l == len);
        }
    }
}

/// Reads `keys` with the plan as `safejax` would; an error naming the keys that would be missing,
/// partly present or left over.
/// `shapes` are the shapes of the keys' tensors, in the same order.
pub fn check(plan: &Plan, keys: &[&str], shapes: &[&[usize]]) -> Result<Outcome, String> {
    let mut schemas = Schemas::new(plan);
    let schema = schemas.ty(&PTy::Struct(0));
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
            facts: facts(&schemas, schema, keys, shapes)?,
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

/// What the file shows of each field, through the schema a load would read it with.
fn facts(schemas: &Schemas, schema: &'static Schema, keys: &[&str], shapes: &[&[usize]]) -> Result<Facts, String> {
    let mut facts: Facts = HashMap::new();
    // The fields whose leaves were seen somewhere: a later place narrows the shape, the first sets it.
    let mut with_leaves = std::collections::HashSet::new();
    for contents in field_contents(schema, keys).map_err(|e| e.to_string())? {
        let Some(&at) = schemas.fields.get(&(contents.field as *const FieldSchema)) else {
            continue;
        };
        let leaf_shapes: Vec<&[usize]> = contents.leaves.iter().map(|&i| shapes[i]).collect();
        let seen = if leaf_shapes.is_empty() {
            with_leaves.contains(&at)
        } else {
            !with_leaves.insert(at)
        };
        facts.entry(at).or_default().merge(seen, &leaf_shapes, &contents.lists);
    }
    Ok(facts)
}

/// The schemas of a plan's structs, made once each. They live as long as the process: the CLI
/// checks one plan per run, and the library's schemas are `'static`.
struct Schemas<'p> {
    plan: &'p Plan,
    structs: Vec<Option<&'static Schema>>,
    /// Each field's schema, by address, to its (struct, field) index.
    fields: HashMap<*const FieldSchema, (usize, usize)>,
}

impl<'p> Schemas<'p> {
    fn new(plan: &'p Plan) -> Self {
        Schemas {
            plan,
            structs: vec![None; plan.structs.len()],
            fields: HashMap::new(),
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
                        shape: None,
                    })
                    .collect();
                let schema = leak(Schema::Struct(StructSchema {
                    name: leak_str(&s.name),
                    style: s.style_attr,
                    class: s.class_attr().map(leak_str),
                    fields: fields.leak(),
                }));
                if let Schema::Struct(s) = schema {
                    for (i, field) in s.fields.iter().enumerate() {
                        self.fields.insert(field as *const FieldSchema, (*id, i));
                    }
                }
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
