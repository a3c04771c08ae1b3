//! The serde `Deserializer`: builds a value from a file whose entries were first matched to the
//! type's schema (see `resolve.rs`). Tensor bytes go to the leaf in one piece, borrowed from the
//! input where the leaf can borrow them, or, read from a file (`from_file`), in chunks that the
//! leaf copies as they come.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use serde::de::value::{BorrowedStrDeserializer, SeqDeserializer};
use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use serde::Deserialize;

use crate::convert::convert;
use crate::dynamic::{VALUE_DICT, VALUE_NAME, VALUE_TENSOR};
use crate::error::IoAt;
use crate::header::{Dims, Entry, Header, Span};
use crate::resolve::{resolve, Resolved};
use crate::schema::{FieldSchema, LeafSchema};
use crate::sniff;
use crate::tensor::{FIELD_DATA, FIELD_DTYPE, FIELD_SHAPE, TENSOR_MAGIC};
use crate::{Dtype, Error, Options, Params, Result};

/// A parsed safetensors file, ready to be read into any number of param types.
///
/// [`from_bytes`](crate::from_bytes) parses and reads in one call; keep a `Deserializer` to read
/// several types (each a subset, with unknown keys allowed) from one parse, or to look at the keys.
///
/// ```
/// # use safejax::{Params, Tensor, Options};
/// # use serde::{Serialize, Deserialize};
/// #[derive(Serialize, Deserialize, Params)]
/// struct Dense { kernel: Tensor<f32>, bias: Tensor<f32> }
///
/// # let bytes = safejax::to_bytes(&Dense { kernel: Tensor::new(vec![1, 1], vec![2.0])?, bias: Tensor::new(vec![1], vec![0.5])? })?;
/// let de = safejax::Deserializer::from_slice(&bytes)?;
/// assert_eq!(de.keys().collect::<Vec<_>>(), ["bias", "kernel"]);
/// let dense: Dense = de.deserialize()?;
/// assert_eq!(dense.bias.as_slice(), &[0.5]);
/// # Ok::<(), safejax::Error>(())
/// ```
pub struct Deserializer<'de> {
    /// The inputs the entries point into: one file, or the shards of a checkpoint.
    inputs: Vec<&'de [u8]>,
    /// Or the file that entries are read from, when a leaf needs them (`from_file`).
    file: Option<FileInput>,
    /// Buffers of the deserializer's own, for entries of [`Span::Owned`], each taken by its leaf.
    owned: Vec<RefCell<Option<Vec<u8>>>>,
    header: Header,
    options: Options,
}

/// A file whose tensors are read when a leaf needs them, in chunks through one scratch buffer,
/// each chunk copied into the leaf as it is read. Memory holds the params and a chunk, never the
/// file besides.
struct FileInput {
    file: File,
    /// Its path, for errors.
    path: std::path::PathBuf,
    scratch: RefCell<Vec<u8>>,
}

/// The size of the chunks in which `from_file` reads large tensors: small enough to stay in cache
/// between the read and the copy, large enough that the system calls do not count.
const CHUNK: usize = 1 << 20;

impl FileInput {
    /// Reads bytes `start..end` (at most [`CHUNK`]) of the file into the scratch buffer.
    fn read_chunk(&self, start: usize, end: usize) -> Result<std::cell::Ref<'_, [u8]>> {
        let len = end - start;
        {
            let mut scratch = self
                .scratch
                .try_borrow_mut()
                .map_err(|_| Error::msg("a chunk read while another is in use"))?;
            if scratch.len() < len {
                scratch.resize(len, 0);
            }
            read_exact_at(&self.file, &mut scratch[..len], start as u64).at(&self.path)?;
        }
        Ok(std::cell::Ref::map(self.scratch.borrow(), |s| &s[..len]))
    }

    /// Reads bytes `start..end` of the file into a new vector.
    fn read_all(&self, start: usize, end: usize) -> Result<Vec<u8>> {
        let mut bytes = vec![0; end - start];
        read_exact_at(&self.file, &mut bytes, start as u64).at(&self.path)?;
        Ok(bytes)
    }
}

/// A large tensor in the file, handed to the leaf as a sequence of chunks.
struct FileChunks<'h> {
    file: &'h FileInput,
    at: usize,
    end: usize,
}

impl<'de> de::SeqAccess<'de> for FileChunks<'_> {
    type Error = Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<Option<S::Value>> {
        if self.at == self.end {
            return Ok(None);
        }
        let to = self.end.min(self.at + CHUNK);
        let chunk = self.file.read_chunk(self.at, to)?;
        self.at = to;
        seed.deserialize(ChunkDeserializer(&chunk)).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some((self.end - self.at).div_ceil(CHUNK))
    }
}

/// One chunk of a tensor's bytes.
struct ChunkDeserializer<'c>(&'c [u8]);

impl<'de> de::Deserializer<'de> for ChunkDeserializer<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_bytes(self.0)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

/// Fills `buf` from `file` at `offset`, without moving a shared cursor where the platform allows.
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
    }
    #[cfg(not(unix))]
    {
        use std::io::{Seek, SeekFrom};
        let mut file = file;
        file.seek(SeekFrom::Start(offset))?;
        file.read_exact(buf)
    }
}

impl<'de> Deserializer<'de> {
    /// Parses and checks the header of the file in `bytes`, with default [`Options`].
    pub fn from_slice(bytes: &'de [u8]) -> Result<Self> {
        Self::with_options(bytes, Options::new())
    }

    /// Parses and checks the header of the file in `bytes`.
    pub fn with_options(bytes: &'de [u8], options: Options) -> Result<Self> {
        let header = Header::parse(bytes).map_err(|e| sniff::safetensors_error(bytes, None, e))?;
        Ok(Self::from_header(vec![bytes], header, options))
    }

    /// A deserializer over entries whose `Span::Input(n)` bytes are in `inputs[n]`.
    pub(crate) fn from_header(inputs: Vec<&'de [u8]>, header: Header, options: Options) -> Self {
        Deserializer {
            inputs,
            file: None,
            owned: Vec::new(),
            header,
            options,
        }
    }

    /// A deserializer over entries whose `Span::Owned(n)` bytes are `buffers[n]`, each handed to
    /// the leaf that reads it: one read of the params (a second finds the buffers taken).
    pub(crate) fn from_buffers(buffers: Vec<Vec<u8>>, header: Header, options: Options) -> Self {
        Deserializer {
            inputs: Vec::new(),
            file: None,
            owned: buffers.into_iter().map(|b| RefCell::new(Some(b))).collect(),
            header,
            options,
        }
    }

    /// A deserializer over the safetensors file at `path`: reads its header now, and each tensor
    /// when a leaf needs it. Leaves own their data (nothing outlives the call to borrow from).
    pub(crate) fn from_file(path: &Path, options: Options) -> Result<Self> {
        let mut file = File::open(path).at(path)?;
        let file_len = usize::try_from(file.metadata().at(path)?.len())
            .map_err(|_| Error::io(path, std::io::Error::from(std::io::ErrorKind::FileTooLarge)))?;
        let mut head = Vec::new();
        (&mut file).take(8).read_to_end(&mut head).at(path)?;
        let header = crate::header::data_start(&head).and_then(|data_start| {
            (&mut file)
                .take((data_start - head.len()) as u64)
                .read_to_end(&mut head)
                .at(path)?;
            Header::parse_head(&head, file_len)
        });
        let header = header.map_err(|e| sniff::safetensors_error(&head, Some(path), e))?;
        Ok(Deserializer {
            inputs: Vec::new(),
            file: Some(FileInput {
                file,
                path: path.to_owned(),
                scratch: RefCell::new(Vec::new()),
            }),
            owned: Vec::new(),
            header,
            options,
        })
    }

    /// The file's `__metadata__`, if it has one.
    pub fn metadata(&self) -> Option<&BTreeMap<String, String>> {
        self.header.metadata.as_ref().map(crate::header::Metadata::map)
    }

    /// The keys of the file, in header order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.header.keys()
    }

    /// Reads the params of type `T`.
    pub fn deserialize<T: Deserialize<'de> + Params>(&self) -> Result<T> {
        let tree = resolve(T::SCHEMA, &self.header, self.options.allow_unknown_keys)?;
        let ctx = Ctx {
            inputs: &self.inputs,
            file: self.file.as_ref(),
            owned: &self.owned,
            header: &self.header,
            convert: self.options.convert_dtypes,
        };
        let mut params = T::deserialize(NodeDeserializer {
            node: Node::Tree(&tree),
            ctx: &ctx,
        })?;
        // Parsed only for a type that keeps it: the text stays unparsed otherwise (hostile headers).
        if T::KEEPS_FILE_METADATA {
            if let Some(metadata) = self.metadata() {
                params.set_file_metadata(metadata);
            }
        }
        Ok(params)
    }
}

/// What every node's deserializer shares.
struct Ctx<'de, 'h> {
    inputs: &'h [&'de [u8]],
    file: Option<&'h FileInput>,
    owned: &'h [RefCell<Option<Vec<u8>>>],
    header: &'h Header,
    convert: bool,
}

/// A leaf's contents, checked against the Rust leaf and converted if need be.
struct LeafData<'de, 'h> {
    dtype: Dtype,
    /// The entry's shape: the leaf makes its own from it.
    shape: Dims<'h>,
    data: LeafBytes<'de, 'h>,
}

/// A leaf's bytes, by how long they live.
enum LeafBytes<'de, 'h> {
    /// In the input: leaves may borrow them.
    Input(&'de [u8]),
    /// In the header's side buffer: leaves copy them.
    Side(&'h [u8]),
    /// Read from the file whole (scalars, and tensors to convert), or the deserializer's own
    /// buffer: leaves may take them.
    Read(Vec<u8>),
    /// In the file, to be read in chunks: leaves copy each.
    File {
        file: &'h FileInput,
        start: usize,
        end: usize,
    },
    /// Made by a conversion: leaves may take them.
    Converted(Vec<u8>),
    /// Handed over to the leaf already.
    Taken,
}

impl LeafBytes<'_, '_> {
    /// The bytes in one piece: a tensor in the file is read whole.
    fn whole(self) -> Result<Self> {
        match self {
            LeafBytes::File { file, start, end } => Ok(LeafBytes::Read(file.read_all(start, end)?)),
            other => Ok(other),
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            LeafBytes::Input(bytes) | LeafBytes::Side(bytes) => bytes,
            LeafBytes::Read(bytes) | LeafBytes::Converted(bytes) => bytes,
            // `Ctx::leaf` reads 0-d tensors (scalars) and tensors to convert whole.
            LeafBytes::File { .. } => unreachable!("a tensor in the file asked for whole"),
            LeafBytes::Taken => &[],
        }
    }
}

impl<'de, 'h> Ctx<'de, 'h> {
    fn leaf(&self, index: usize, schema: &LeafSchema) -> Result<LeafData<'de, 'h>> {
        let entry: &'h Entry = &self.header.entries[index];
        let (key, shape) = (self.header.key_of(entry), self.header.shape_of(entry));
        let raw = match (entry.span(), self.file) {
            (Span::Input(_), Some(file)) => {
                let convert = schema.dtype.is_some_and(|d| d != entry.dtype);
                if convert || shape.is_empty() {
                    LeafBytes::Read(file.read_all(entry.start, entry.end)?)
                } else {
                    LeafBytes::File {
                        file,
                        start: entry.start,
                        end: entry.end,
                    }
                }
            }
            (Span::Input(n), None) => LeafBytes::Input(&self.inputs[n][entry.start..entry.end]),
            (Span::Side, _) => LeafBytes::Side(&self.header.side[entry.start..entry.end]),
            (Span::Owned(n), _) => LeafBytes::Read(
                self.owned[n]
                    .borrow_mut()
                    .take()
                    .ok_or_else(|| Error::at(key, "tensor data read twice"))?,
            ),
        };
        if let Some(rank) = schema.rank {
            if shape.len() != rank {
                let expected = if rank == 0 {
                    "a scalar (shape [])".to_owned()
                } else {
                    crate::error::dimensions(rank)
                };
                return Err(Error::ShapeMismatch {
                    key: key.to_owned(),
                    expected,
                    found: shape.to_vec(),
                });
            }
        }
        let (dtype, data) = match schema.dtype {
            Some(expected) if expected != entry.dtype => {
                if !self.convert || !crate::convert::convertible(entry.dtype, expected) {
                    return Err(Error::DtypeMismatch {
                        key: key.to_owned(),
                        expected,
                        found: entry.dtype,
                    });
                }
                let converted = convert(raw.as_slice(), entry.dtype, expected).map_err(|reason| Error::Conversion {
                    key: key.to_owned(),
                    from: entry.dtype,
                    to: expected,
                    reason,
                })?;
                (expected, LeafBytes::Converted(converted))
            }
            _ => (entry.dtype, raw),
        };
        Ok(LeafData { dtype, shape, data })
    }

    fn key(&self, index: usize) -> &str {
        self.header.key(index)
    }
}

/// What a [`NodeDeserializer`] stands at: a node of the resolved tree, or one leaf of a
/// [`Resolved::Leaves`] map, which keeps no node per leaf.
#[derive(Clone, Copy)]
enum Node<'r, 'h> {
    Tree(&'r Resolved<'h>),
    Leaf { entry: u32, schema: &'static LeafSchema },
}

impl Node<'_, '_> {
    /// The header entry and schema of a leaf.
    fn leaf(self) -> Option<(usize, &'static LeafSchema)> {
        match self {
            Node::Leaf { entry, schema } | Node::Tree(&Resolved::Leaf { entry, schema, .. }) => {
                Some((entry as usize, schema))
            }
            Node::Tree(_) => None,
        }
    }
}

/// Deserializes one node of the resolved tree.
struct NodeDeserializer<'r, 'de, 'h> {
    node: Node<'r, 'h>,
    ctx: &'r Ctx<'de, 'h>,
}

impl<'r, 'de, 'h> NodeDeserializer<'r, 'de, 'h> {
    fn child(&self, node: &'r Resolved<'h>) -> Self {
        NodeDeserializer {
            node: Node::Tree(node),
            ctx: self.ctx,
        }
    }

    fn unexpected(&self, wanted: &str) -> Error {
        let found = match self.node {
            Node::Leaf { entry, .. } | Node::Tree(&Resolved::Leaf { entry, .. }) => {
                return Error::at(
                    self.ctx.key(entry as usize),
                    format_args!("the type asks for {wanted} where its schema has a leaf"),
                )
            }
            Node::Tree(Resolved::Struct(_)) => "a struct",
            Node::Tree(Resolved::Seq(_)) => "a list",
            Node::Tree(Resolved::Map(_) | Resolved::Leaves(_)) => "a map",
            Node::Tree(Resolved::None | Resolved::Some(_)) => "an option",
            Node::Tree(Resolved::Missing) => "a missing leaf",
        };
        Error::msg(format_args!("the type asks for {wanted} where its schema has {found}"))
    }

    /// A 0-d leaf handed to the visitor as the matching Rust primitive.
    fn scalar<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let Some((entry, schema)) = self.node.leaf() else {
            return Err(self.unexpected("a scalar"));
        };
        let leaf = self.ctx.leaf(entry, schema)?;
        if !leaf.shape.is_empty() {
            return Err(Error::ShapeMismatch {
                key: self.ctx.key(entry).to_owned(),
                expected: "a scalar (shape [])".to_owned(),
                found: leaf.shape.to_vec(),
            });
        }
        let b = leaf.data.as_slice();
        let Some(result) = leaf.dtype.visit_element(b, visitor) else {
            return Err(Error::at(
                self.ctx.key(entry),
                format_args!("{} scalars are not supported", leaf.dtype),
            ));
        };
        result.map_err(|e: Error| e.with_key(self.ctx.key(entry)))
    }

    fn tensor<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let Some((entry, schema)) = self.node.leaf() else {
            return Err(self.unexpected("a tensor"));
        };
        let leaf = self.ctx.leaf(entry, schema)?;
        visitor
            .visit_map(TensorAccess {
                leaf: Some(leaf),
                field: 0,
            })
            .map_err(|e: Error| e.with_key(self.ctx.key(entry)))
    }
}

macro_rules! scalars {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            self.scalar(visitor)
        }
    )*};
}

macro_rules! refuse {
    ($($method:ident => $what:literal)*) => {$(
        fn $method<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value> {
            Err(self.unexpected($what))
        }
    )*};
}

impl<'de> de::Deserializer<'de> for NodeDeserializer<'_, 'de, '_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.node {
            Node::Leaf { schema, .. } | Node::Tree(&Resolved::Leaf { schema, .. }) if schema.rank == Some(0) => {
                self.scalar(visitor)
            }
            Node::Leaf { .. } | Node::Tree(Resolved::Leaf { .. }) => self.tensor(visitor),
            Node::Tree(Resolved::Struct(_) | Resolved::Map(_) | Resolved::Leaves(_)) => self.deserialize_map(visitor),
            Node::Tree(Resolved::Seq(_)) => self.deserialize_seq(visitor),
            Node::Tree(Resolved::None | Resolved::Some(_)) => self.deserialize_option(visitor),
            Node::Tree(Resolved::Missing) => Err(self.unexpected("a value")),
        }
    }

    scalars!(deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_u8
        deserialize_u16 deserialize_u32 deserialize_u64 deserialize_f32 deserialize_f64);

    refuse!(deserialize_char => "a char" deserialize_str => "a string" deserialize_string => "a string"
        deserialize_bytes => "bytes" deserialize_byte_buf => "bytes" deserialize_unit => "a unit"
        deserialize_identifier => "an identifier");

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.node {
            Node::Tree(Resolved::None) => visitor.visit_none(),
            Node::Tree(Resolved::Some(inner)) => visitor.visit_some(self.child(inner)),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _name: &'static str, _visitor: V) -> Result<V::Value> {
        Err(self.unexpected("a unit struct"))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.node {
            Node::Tree(Resolved::Seq(elements)) => {
                visitor.visit_seq(SeqDeserializer::new(elements.iter().map(|node| self.child(node))))
            }
            _ => Err(self.unexpected("a list")),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        _visitor: V,
    ) -> Result<V::Value> {
        Err(self.unexpected("a tuple struct"))
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let ctx = self.ctx;
        match self.node {
            Node::Tree(Resolved::Map(entries)) => visitor.visit_map(de::value::MapDeserializer::new(
                entries
                    .iter()
                    .map(|(name, node)| (MapKeyDeserializer(name), self.child(node))),
            )),
            Node::Tree(Resolved::Leaves(map)) => {
                visitor.visit_map(de::value::MapDeserializer::new(map.entries.iter().map(|leaf| {
                    let node = Node::Leaf {
                        entry: leaf.entry,
                        schema: map.schema,
                    };
                    let name = leaf.name(ctx.key(leaf.entry as usize));
                    (MapKeyDeserializer(name), NodeDeserializer { node, ctx })
                })))
            }
            Node::Tree(Resolved::Struct(fields)) => {
                visitor.visit_map(de::value::MapDeserializer::new(fields.iter().map(
                    |(field, node): &(&'static FieldSchema, Resolved<'_>)| {
                        (BorrowedStrDeserializer::<Error>::new(field.name), self.child(node))
                    },
                )))
            }
            _ => Err(self.unexpected("a map")),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        if name == TENSOR_MAGIC {
            return self.tensor(visitor);
        }
        // A plain ndarray field at a leaf: ndarray's own serde form (see `ndarray/serde_form.rs`).
        #[cfg(feature = "ndarray")]
        if let (crate::ndarray::SERDE_NAME, Some((entry, schema))) = (name, self.node.leaf()) {
            let leaf = self.ctx.leaf(entry, schema)?;
            let data = leaf.data.whole()?;
            return crate::ndarray::deserialize_array(leaf.dtype, &leaf.shape.to_vec(), data.as_slice(), visitor)
                .map_err(|e| e.with_key(self.ctx.key(entry)));
        }
        match self.node {
            Node::Tree(Resolved::Struct(_)) => self.deserialize_map(visitor),
            _ => Err(self.unexpected(&format!("struct `{name}`"))),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        // A `Value` is a tensor or a dict, by what the file has at this node.
        let variant = match (name, self.node) {
            (VALUE_NAME, node) if node.leaf().is_some() => VALUE_TENSOR,
            (VALUE_NAME, Node::Tree(Resolved::Map(_) | Resolved::Leaves(_))) => VALUE_DICT,
            _ => return Err(self.unexpected("an enum")),
        };
        visitor.visit_enum(ValueAccess { variant, node: self })
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_unit()
    }
}

impl<'de> IntoDeserializer<'de, Error> for NodeDeserializer<'_, 'de, '_> {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

/// The variant of a `Value` and the node it wraps.
struct ValueAccess<'r, 'de, 'h> {
    variant: &'static str,
    node: NodeDeserializer<'r, 'de, 'h>,
}

impl<'de, 'r, 'h> de::EnumAccess<'de> for ValueAccess<'r, 'de, 'h> {
    type Error = Error;
    type Variant = NodeDeserializer<'r, 'de, 'h>;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Self::Variant)> {
        let variant = seed.deserialize(BorrowedStrDeserializer::<Error>::new(self.variant))?;
        Ok((variant, self.node))
    }
}

impl<'de> de::VariantAccess<'de> for NodeDeserializer<'_, 'de, '_> {
    type Error = Error;

    fn unit_variant(self) -> Result<()> {
        Err(self.unexpected("a unit variant"))
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, _visitor: V) -> Result<V::Value> {
        Err(self.unexpected("a tuple variant"))
    }

    fn struct_variant<V: Visitor<'de>>(self, _fields: &'static [&'static str], _visitor: V) -> Result<V::Value> {
        Err(self.unexpected("a struct variant"))
    }
}

/// A map key: a name, or a list index for maps keyed by integers.
struct MapKeyDeserializer<'a>(&'a str);

impl<'de> IntoDeserializer<'de, Error> for MapKeyDeserializer<'_> {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

macro_rules! parse_index {
    ($($method:ident => $visit:ident),*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            let index = self.0.parse().map_err(|_| Error::msg(format_args!("map key `{}` is not a list index", self.0)))?;
            visitor.$visit(index)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for MapKeyDeserializer<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_str(self.0)
    }

    parse_index!(deserialize_u8 => visit_u8, deserialize_u16 => visit_u16, deserialize_u32 => visit_u32,
        deserialize_u64 => visit_u64, deserialize_i8 => visit_i8, deserialize_i16 => visit_i16,
        deserialize_i32 => visit_i32, deserialize_i64 => visit_i64);

    serde::forward_to_deserialize_any! {
        bool f32 f64 char str string bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any u128 i128
    }
}

/// The three fields of a tensor: dtype, shape, and the data in one piece.
struct TensorAccess<'de, 'h> {
    leaf: Option<LeafData<'de, 'h>>,
    field: usize,
}

impl<'de> de::MapAccess<'de> for TensorAccess<'de, '_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        let name = match self.field {
            0 => FIELD_DTYPE,
            1 => FIELD_SHAPE,
            2 => FIELD_DATA,
            _ => return Ok(None),
        };
        seed.deserialize(BorrowedStrDeserializer::new(name)).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        let field = self.field;
        self.field += 1;
        let leaf = self
            .leaf
            .as_mut()
            .ok_or_else(|| Error::msg("tensor fields read twice"))?;
        match field {
            0 => seed.deserialize(BorrowedStrDeserializer::new(leaf.dtype.name())),
            1 => seed.deserialize(SeqDeserializer::new(leaf.shape.iter().map(|d| d as u64))),
            _ => {
                let data = std::mem::replace(&mut leaf.data, LeafBytes::Taken);
                seed.deserialize(DataDeserializer(data))
            }
        }
    }
}

/// Tensor bytes, in one piece: borrowed from the input where they can be.
struct DataDeserializer<'de, 'h>(LeafBytes<'de, 'h>);

impl<'de> de::Deserializer<'de> for DataDeserializer<'de, '_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.0 {
            LeafBytes::Input(bytes) => visitor.visit_borrowed_bytes(bytes),
            LeafBytes::Side(bytes) => visitor.visit_bytes(bytes),
            LeafBytes::Read(bytes) => visitor.visit_byte_buf(bytes),
            LeafBytes::File { file, start, end } => visitor.visit_seq(FileChunks { file, at: start, end }),
            LeafBytes::Converted(bytes) => visitor.visit_byte_buf(bytes),
            LeafBytes::Taken => Err(Error::msg("tensor data read twice")),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}
