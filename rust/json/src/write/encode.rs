//! One encoder per Arrow array, built once per batch, that writes the JSON of any one value.
//!
//! The tree of encoders mirrors the array's type (a list's encoder holds its items' encoder),
//! so the type is matched once per batch, not once per value. Values are read from the
//! buffers with bounds checks: arrays imported through the C Data Interface are trusted by
//! arrow-rs, and a bad offset must be an error here, never a read past a buffer.

use arrow_array::cast::AsArray;
use arrow_array::types::{
    ArrowDictionaryKeyType, ArrowPrimitiveType, Float16Type, Float32Type, Float64Type, Int16Type,
    Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow_array::{Array, BooleanArray, OffsetSizeTrait};
use arrow_buffer::{ArrowNativeType, NullBuffer};
use arrow_schema::{DataType, Fields};

use super::error::WriteProblem;
use crate::text::escape_into;

/// A step from a value to one inside it, for the path in an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    Field(String),
    Index(usize),
    /// Any element of a list (a type problem, found before any value is looked at).
    AnyIndex,
}

/// A problem and the path to it, innermost step first (pushed as the error goes outwards).
#[derive(Debug)]
pub(crate) struct Fault {
    pub(crate) path: Vec<Step>,
    pub(crate) problem: WriteProblem,
}

impl Fault {
    fn new(problem: WriteProblem) -> Self {
        Self {
            path: Vec::new(),
            problem,
        }
    }

    fn at(mut self, step: Step) -> Self {
        self.path.push(step);
        self
    }
}

/// Writes the JSON text of value `i` of its array.
pub(crate) trait Encode: Sync {
    fn encode(&self, i: usize, out: &mut Vec<u8>) -> Result<(), Fault>;
}

/// What to do with a type that has no JSON form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unsupported {
    /// Refuse it (writing JSON).
    Refuse,
    /// Pass over it, writing nothing (checking values for a format that can hold the type).
    Skip,
}

type Boxed<'a> = Box<dyn Encode + 'a>;

/// The encoder of `array`'s values, nulls included.
pub(crate) fn encoder(array: &dyn Array, unsupported: Unsupported) -> Result<Boxed<'_>, Fault> {
    let values = values_encoder(array, unsupported)?;
    Ok(match array.nulls() {
        Some(nulls) if nulls.null_count() > 0 => Box::new(Nullable { nulls, values }),
        _ => values,
    })
}

/// The encoder of `array`'s values, for rows known to be valid.
fn values_encoder(array: &dyn Array, unsupported: Unsupported) -> Result<Boxed<'_>, Fault> {
    Ok(match array.data_type() {
        DataType::Null => Box::new(Literal(b"null")),
        DataType::Boolean => Box::new(Bool(array.as_boolean())),
        DataType::Int8 => Box::new(Int(primitive::<Int8Type>(array))),
        DataType::Int16 => Box::new(Int(primitive::<Int16Type>(array))),
        DataType::Int32 => Box::new(Int(primitive::<Int32Type>(array))),
        DataType::Int64 => Box::new(Int(primitive::<Int64Type>(array))),
        DataType::UInt8 => Box::new(Int(primitive::<UInt8Type>(array))),
        DataType::UInt16 => Box::new(Int(primitive::<UInt16Type>(array))),
        DataType::UInt32 => Box::new(Int(primitive::<UInt32Type>(array))),
        DataType::UInt64 => Box::new(Int(primitive::<UInt64Type>(array))),
        DataType::Float16 => Box::new(Float(primitive::<Float16Type>(array), |v| v.to_f64())),
        DataType::Float32 => Box::new(Float(primitive::<Float32Type>(array), f64::from)),
        DataType::Float64 => Box::new(Float(primitive::<Float64Type>(array), |v| v)),
        DataType::Utf8 => Box::new(string::<i32>(array)),
        DataType::LargeUtf8 => Box::new(string::<i64>(array)),
        DataType::List(_) => Box::new(list::<i32>(array, unsupported)?),
        DataType::LargeList(_) => Box::new(list::<i64>(array, unsupported)?),
        DataType::FixedSizeList(_, _) => {
            let lists = array.as_fixed_size_list();
            Box::new(FixedSizeList {
                size: lists.value_length().as_usize(),
                items: encoder(lists.values().as_ref(), unsupported)
                    .map_err(|f| f.at(Step::AnyIndex))?,
            })
        }
        DataType::Struct(fields) => {
            let columns = array.as_struct().columns();
            Box::new(Object::new(fields, columns, unsupported)?)
        }
        DataType::Dictionary(key, _) => match key.as_ref() {
            DataType::Int8 => dictionary::<Int8Type>(array, unsupported)?,
            DataType::Int16 => dictionary::<Int16Type>(array, unsupported)?,
            DataType::Int32 => dictionary::<Int32Type>(array, unsupported)?,
            DataType::Int64 => dictionary::<Int64Type>(array, unsupported)?,
            DataType::UInt8 => dictionary::<UInt8Type>(array, unsupported)?,
            DataType::UInt16 => dictionary::<UInt16Type>(array, unsupported)?,
            DataType::UInt32 => dictionary::<UInt32Type>(array, unsupported)?,
            DataType::UInt64 => dictionary::<UInt64Type>(array, unsupported)?,
            _ => return refuse(array, unsupported),
        },
        _ => return refuse(array, unsupported),
    })
}

fn refuse(array: &dyn Array, unsupported: Unsupported) -> Result<Boxed<'_>, Fault> {
    match unsupported {
        Unsupported::Refuse => Err(Fault::new(WriteProblem::Unsupported(
            array.data_type().clone(),
        ))),
        Unsupported::Skip => Ok(Box::new(Literal(b""))),
    }
}

fn primitive<T: ArrowPrimitiveType>(array: &dyn Array) -> &[T::Native] {
    array.as_primitive::<T>().values()
}

/// The JSON object of each row of `columns`: keys in column order. The encoder of a struct
/// array, and of a record batch's rows.
pub(crate) struct Object<'a> {
    /// `"key": ` before each member (`, ` before all but the first).
    keys: Vec<Vec<u8>>,
    names: Vec<&'a str>,
    members: Vec<Boxed<'a>>,
}

impl<'a> Object<'a> {
    pub(crate) fn new(
        fields: &'a Fields,
        columns: &'a [arrow_array::ArrayRef],
        unsupported: Unsupported,
    ) -> Result<Self, Fault> {
        let mut keys = Vec::with_capacity(fields.len());
        let mut members = Vec::with_capacity(fields.len());
        for (j, (field, column)) in fields.iter().zip(columns).enumerate() {
            let step = || Step::Field(field.name().clone());
            let mut key = Vec::from(if j == 0 { &b"\""[..] } else { b", \"" });
            escape_into(field.name().as_bytes(), &mut key)
                .map_err(|byte| Fault::new(WriteProblem::InvalidUtf8 { byte }).at(step()))?;
            key.extend_from_slice(b"\": ");
            keys.push(key);
            members.push(encoder(column.as_ref(), unsupported).map_err(|f| f.at(step()))?);
        }
        let names = fields.iter().map(|f| f.name().as_str()).collect();
        Ok(Self {
            keys,
            names,
            members,
        })
    }
}

impl Encode for Object<'_> {
    fn encode(&self, i: usize, out: &mut Vec<u8>) -> Result<(), Fault> {
        out.push(b'{');
        for ((key, member), name) in self.keys.iter().zip(&self.members).zip(&self.names) {
            out.extend_from_slice(key);
            member
                .encode(i, out)
                .map_err(|f| f.at(Step::Field((*name).to_owned())))?;
        }
        out.push(b'}');
        Ok(())
    }
}

/// `null` where the validity bitmap says so, else the value.
struct Nullable<'a> {
    nulls: &'a NullBuffer,
    values: Boxed<'a>,
}

impl Encode for Nullable<'_> {
    fn encode(&self, i: usize, out: &mut Vec<u8>) -> Result<(), Fault> {
        if self.nulls.is_null(i) {
            out.extend_from_slice(b"null");
            Ok(())
        } else {
            self.values.encode(i, out)
        }
    }
}

/// The same text for every value: `null` for the Null type, nothing for a skipped column.
struct Literal(&'static [u8]);

impl Encode for Literal {
    fn encode(&self, _: usize, out: &mut Vec<u8>) -> Result<(), Fault> {
        out.extend_from_slice(self.0);
        Ok(())
    }
}

struct Bool<'a>(&'a BooleanArray);

impl Encode for Bool<'_> {
    fn encode(&self, i: usize, out: &mut Vec<u8>) -> Result<(), Fault> {
        let text: &[u8] = if self.0.value(i) { b"true" } else { b"false" };
        out.extend_from_slice(text);
        Ok(())
    }
}

/// Integers exactly, in decimal.
struct Int<'a, N>(&'a [N]);

impl<N: itoa::Integer + Copy + Sync> Encode for Int<'_, N> {
    fn encode(&self, i: usize, out: &mut Vec<u8>) -> Result<(), Fault> {
        out.extend_from_slice(itoa::Buffer::new().format(self.0[i]).as_bytes());
        Ok(())
    }
}

/// Floats as the shortest decimal that parses back to the same `f64` (`2.0` keeps its `.0`,
/// so it reads back as a float; `1e300` stays short). `f32` and `f16` are written as the
/// `f64` of equal value, which is what JSON readers parse into; non-finite values are refused.
struct Float<'a, N>(&'a [N], fn(N) -> f64);

impl<N: Copy + Sync> Encode for Float<'_, N> {
    fn encode(&self, i: usize, out: &mut Vec<u8>) -> Result<(), Fault> {
        let value = (self.1)(self.0[i]);
        if !value.is_finite() {
            return Err(Fault::new(WriteProblem::NonFinite(value)));
        }
        out.extend_from_slice(ryu::Buffer::new().format_finite(value).as_bytes());
        Ok(())
    }
}

/// The bytes `offsets[i]..offsets[i + 1]` of `data`, or a fault if they are not in it.
fn span<'d, O: OffsetSizeTrait>(
    offsets: &[O],
    data: &'d [u8],
    i: usize,
) -> Result<&'d [u8], Fault> {
    let (start, end) = bounds(offsets, i)?;
    data.get(start..end).ok_or_else(|| {
        Fault::new(WriteProblem::Malformed(format!(
            "string offsets {start}..{end} run outside its {} bytes of data",
            data.len()
        )))
    })
}

/// `offsets[i]..offsets[i + 1]` as indices, or a fault.
fn bounds<O: OffsetSizeTrait>(offsets: &[O], i: usize) -> Result<(usize, usize), Fault> {
    let get = |k: usize| offsets.get(k).and_then(|o| o.to_usize());
    match (get(i), get(i + 1)) {
        (Some(start), Some(end)) if start <= end => Ok((start, end)),
        _ => Err(Fault::new(WriteProblem::Malformed(format!(
            "offsets of value {i} are missing, negative or decreasing"
        )))),
    }
}

struct Str<'a, O> {
    offsets: &'a [O],
    data: &'a [u8],
}

fn string<O: OffsetSizeTrait>(array: &dyn Array) -> Str<'_, O> {
    let strings = array.as_string::<O>();
    Str {
        offsets: strings.value_offsets(),
        data: strings.value_data(),
    }
}

impl<O: OffsetSizeTrait> Encode for Str<'_, O> {
    fn encode(&self, i: usize, out: &mut Vec<u8>) -> Result<(), Fault> {
        let text = span(self.offsets, self.data, i)?;
        out.reserve(text.len() + 2);
        out.push(b'"');
        escape_into(text, out).map_err(|byte| Fault::new(WriteProblem::InvalidUtf8 { byte }))?;
        out.push(b'"');
        Ok(())
    }
}

struct List<'a, O> {
    offsets: &'a [O],
    /// The encoder of the whole child array, which the offsets index.
    items: Boxed<'a>,
    items_len: usize,
}

fn list<O: OffsetSizeTrait>(
    array: &dyn Array,
    unsupported: Unsupported,
) -> Result<List<'_, O>, Fault> {
    let lists = array.as_list::<O>();
    Ok(List {
        offsets: lists.value_offsets(),
        items_len: lists.values().len(),
        items: encoder(lists.values().as_ref(), unsupported).map_err(|f| f.at(Step::AnyIndex))?,
    })
}

/// `[a, b, c]`, the items `range` of `items`.
fn write_items(
    items: &dyn Encode,
    range: std::ops::Range<usize>,
    out: &mut Vec<u8>,
) -> Result<(), Fault> {
    out.push(b'[');
    let first = range.start;
    for k in range {
        if k > first {
            out.extend_from_slice(b", ");
        }
        items
            .encode(k, out)
            .map_err(|f| f.at(Step::Index(k - first)))?;
    }
    out.push(b']');
    Ok(())
}

impl<O: OffsetSizeTrait> Encode for List<'_, O> {
    fn encode(&self, i: usize, out: &mut Vec<u8>) -> Result<(), Fault> {
        let (start, end) = bounds(self.offsets, i)?;
        if end > self.items_len {
            return Err(Fault::new(WriteProblem::Malformed(format!(
                "list offsets {start}..{end} run past its {} items",
                self.items_len
            ))));
        }
        write_items(self.items.as_ref(), start..end, out)
    }
}

/// Lists of `size` items each; the child array is already sliced to the list array.
struct FixedSizeList<'a> {
    size: usize,
    items: Boxed<'a>,
}

impl Encode for FixedSizeList<'_> {
    fn encode(&self, i: usize, out: &mut Vec<u8>) -> Result<(), Fault> {
        write_items(self.items.as_ref(), i * self.size..(i + 1) * self.size, out)
    }
}

/// Dictionary-encoded values: each key's value from the dictionary, written as it.
struct Dictionary<'a, K> {
    keys: &'a [K],
    len: usize,
    values: Boxed<'a>,
}

fn dictionary<K: ArrowDictionaryKeyType>(
    array: &dyn Array,
    unsupported: Unsupported,
) -> Result<Boxed<'_>, Fault> {
    let dictionary = array.as_dictionary::<K>();
    let values = dictionary.values();
    Ok(Box::new(Dictionary {
        keys: dictionary.keys().values(),
        len: values.len(),
        values: encoder(values.as_ref(), unsupported)?,
    }))
}

impl<K: ArrowNativeType + Sync> Encode for Dictionary<'_, K> {
    fn encode(&self, i: usize, out: &mut Vec<u8>) -> Result<(), Fault> {
        let key = self.keys[i];
        match key.to_usize() {
            Some(k) if k < self.len => self.values.encode(k, out),
            _ => Err(Fault::new(WriteProblem::Malformed(format!(
                "dictionary key {key:?} is outside the {} values of the dictionary",
                self.len
            )))),
        }
    }
}
