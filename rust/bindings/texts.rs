//! Texts to the numbers selection takes (`dpov2-core`'s `content` module): which responses
//! repeat an earlier one of their prompt, and each instance's content key. Arrow string
//! arrays come in through the C Data Interface, read in place.

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, GenericStringArray, OffsetSizeTrait, StructArray};
use arrow_schema::DataType;
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;

use crate::arrays::slice;
use crate::arrow::import_array;
use crate::errors::Result;
use crate::threads;

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(duplicate_of, m)?)?;
    m.add_function(wrap_pyfunction!(content_keys, m)?)?;
    Ok(())
}

/// A string array's values as byte slices (a null as no bytes).
enum Texts<'a> {
    Small(&'a GenericStringArray<i32>),
    Large(&'a GenericStringArray<i64>),
}

impl<'a> Texts<'a> {
    fn new(array: &'a ArrayRef, name: &str) -> Result<Self> {
        match array.data_type() {
            DataType::Utf8 => Ok(Self::Small(array.as_string::<i32>())),
            DataType::LargeUtf8 => Ok(Self::Large(array.as_string::<i64>())),
            other => Err(PyTypeError::new_err(format!(
                "{name} must be an Arrow string array, got type {other}"
            ))
            .into()),
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::Small(a) => a.len(),
            Self::Large(a) => a.len(),
        }
    }

    fn is_null(&self, k: usize) -> bool {
        match self {
            Self::Small(a) => a.is_null(k),
            Self::Large(a) => a.is_null(k),
        }
    }

    fn get(&self, k: usize) -> &'a [u8] {
        fn bytes<O: OffsetSizeTrait>(a: &GenericStringArray<O>, k: usize) -> &[u8] {
            if a.is_null(k) {
                &[]
            } else {
                a.value(k).as_bytes()
            }
        }
        match self {
            Self::Small(a) => bytes(a, k),
            Self::Large(a) => bytes(a, k),
        }
    }
}

/// Per response, the index within its prompt of the first response with byte-equal text
/// (its own index for a first occurrence); `offsets` delimit the prompts in `texts`. The
/// prompts are shared out among `num_threads` threads (see `threads.rs`).
#[pyfunction]
#[pyo3(signature = (texts, offsets, *, num_threads=None))]
fn duplicate_of<'py>(
    py: Python<'py>,
    texts: &Bound<'py, PyAny>,
    offsets: PyReadonlyArray1<'py, i64>,
    num_threads: Option<usize>,
) -> Result<Bound<'py, PyArray1<i64>>> {
    let array = import_array(texts)?;
    let texts = Texts::new(&array, "texts")?;
    let offsets = dpov2_core::checked_offsets(slice(&offsets, "offsets")?, texts.len())?;
    let out = py.detach(|| {
        threads::install(num_threads, || {
            dpov2_core::duplicate_of(|k| texts.get(k), &offsets)
        })
    })?;
    Ok(out.into_pyarray(py))
}

/// The prompts as pieces of bytes: a text is one piece, chat messages two per message
/// (role, content), a missing prompt none.
enum Prompts<'a> {
    /// A column of only nulls (Arrow's `Null` type).
    Missing(usize),
    Texts(Texts<'a>),
    Messages {
        offsets: Vec<usize>,
        roles: Texts<'a>,
        contents: Texts<'a>,
        valid: Vec<bool>,
    },
}

impl<'a> Prompts<'a> {
    fn new(array: &'a ArrayRef, children: &'a mut Vec<ArrayRef>) -> Result<Self> {
        let (offsets, values): (Vec<usize>, &StructArray) = match array.data_type() {
            DataType::Null => return Ok(Self::Missing(array.len())),
            DataType::Utf8 | DataType::LargeUtf8 => {
                return Ok(Self::Texts(Texts::new(array, "prompts")?))
            }
            DataType::List(_) => {
                let list = array.as_list::<i32>();
                let offsets = list.value_offsets().iter().map(|&o| o as usize).collect();
                (offsets, struct_values(list.values())?)
            }
            DataType::LargeList(_) => {
                let list = array.as_list::<i64>();
                let offsets = list.value_offsets().iter().map(|&o| o as usize).collect();
                (offsets, struct_values(list.values())?)
            }
            other => return Err(messages_error(other)),
        };
        for name in ["role", "content"] {
            let column = values
                .column_by_name(name)
                .ok_or_else(|| messages_error(values.data_type()))?;
            children.push(column.clone());
        }
        let valid = (0..array.len()).map(|p| array.is_valid(p)).collect();
        let [roles, contents] = &children[..] else {
            unreachable!("two columns were pushed")
        };
        Ok(Self::Messages {
            offsets,
            roles: Texts::new(roles, "prompt roles")?,
            contents: Texts::new(contents, "prompt contents")?,
            valid,
        })
    }

    fn len(&self) -> usize {
        match self {
            Self::Missing(n) => *n,
            Self::Texts(t) => t.len(),
            Self::Messages { valid, .. } => valid.len(),
        }
    }

    /// Prompt `p`'s pieces, without collecting them.
    fn pieces(&self, p: usize) -> Pieces<'_, 'a> {
        match self {
            Self::Missing(_) => Pieces {
                prompts: self,
                next: 0,
                end: 0,
                text: None,
            },
            Self::Texts(t) if t.is_null(p) => Pieces {
                prompts: self,
                next: 0,
                end: 0,
                text: None,
            },
            Self::Texts(t) => Pieces {
                prompts: self,
                next: 0,
                end: 1,
                text: Some(t.get(p)),
            },
            Self::Messages { offsets, valid, .. } => {
                let (first, last) = if valid[p] {
                    (offsets[p], offsets[p + 1])
                } else {
                    (0, 0)
                };
                Pieces {
                    prompts: self,
                    next: 2 * first,
                    end: 2 * last,
                    text: None,
                }
            }
        }
    }
}

/// The pieces of one prompt: its text, or message `m`'s role at `2m` and content at `2m + 1`.
struct Pieces<'p, 'a> {
    prompts: &'p Prompts<'a>,
    next: usize,
    end: usize,
    text: Option<&'a [u8]>,
}

impl<'a> Iterator for Pieces<'_, 'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.next == self.end {
            return None;
        }
        let at = self.next;
        self.next += 1;
        match self.prompts {
            Prompts::Missing(_) | Prompts::Texts(_) => self.text,
            Prompts::Messages {
                roles, contents, ..
            } => Some(if at.is_multiple_of(2) {
                roles.get(at / 2)
            } else {
                contents.get(at / 2)
            }),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.end - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Pieces<'_, '_> {}

fn struct_values(values: &ArrayRef) -> Result<&StructArray> {
    values
        .as_struct_opt()
        .ok_or_else(|| messages_error(values.data_type()))
}

fn messages_error(kind: &DataType) -> crate::errors::Error {
    PyTypeError::new_err(format!(
        "prompts must be an Arrow string array or a list of {{role, content}} string structs, \
         got type {kind}"
    ))
    .into()
}

/// The content key of every instance (see `dpov2_core::content_key`): prompt `p` and its
/// responses `texts[offsets[p]:offsets[p + 1]]`.
#[pyfunction]
fn content_keys<'py>(
    py: Python<'py>,
    prompts: &Bound<'py, PyAny>,
    texts: &Bound<'py, PyAny>,
    offsets: PyReadonlyArray1<'py, i64>,
) -> Result<Bound<'py, PyArray1<u64>>> {
    let prompt_array = import_array(prompts)?;
    let mut children = Vec::new();
    let prompts = Prompts::new(&prompt_array, &mut children)?;
    let text_array = import_array(texts)?;
    let texts = Texts::new(&text_array, "texts")?;
    let offsets = dpov2_core::checked_offsets(slice(&offsets, "offsets")?, texts.len())?;
    if offsets.len() - 1 != prompts.len() {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "offsets delimit {} prompts but there are {}; they must match",
            offsets.len() - 1,
            prompts.len()
        ))
        .into());
    }
    let keys: Vec<u64> = py.detach(|| {
        offsets
            .windows(2)
            .enumerate()
            .map(|(p, w)| {
                dpov2_core::content_key(prompts.pieces(p), (w[0]..w[1]).map(|k| texts.get(k)))
            })
            .collect()
    });
    Ok(keys.into_pyarray(py))
}
