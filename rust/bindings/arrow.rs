//! Arrow data between Python and arrow-rs, zero-copy, through the Arrow C Data Interface and
//! its PyCapsule protocol (<https://arrow.apache.org/docs/format/CDataInterface/PyCapsuleInterface.html>).
//!
//! - In: [`import_batch`] and [`import_array`] take any object with `__arrow_c_array__`
//!   (a `pyarrow.RecordBatch` or `pyarrow.Array`, or another library's) and return arrow-rs
//!   values sharing its buffers; the buffers stay alive until the last arrow-rs reference goes.
//! - Out: [`export_batch`] wraps an arrow-rs `RecordBatch` in an [`ArrowBatch`], which
//!   implements `__arrow_c_array__` and `__arrow_c_schema__`, so `pyarrow.record_batch(obj)`
//!   (or `pyarrow.array(obj)` for the struct array) takes it without copying.
//!
//! Written on PyO3 directly: arrow's own `pyarrow` feature pins another PyO3 version.

use std::ffi::CStr;
use std::ptr::NonNull;
use std::sync::Arc;

use arrow_array::ffi::{from_ffi, to_ffi, FFI_ArrowArray, FFI_ArrowSchema};
use arrow_array::{make_array, Array, ArrayRef, RecordBatch, RecordBatchOptions, StructArray};
use arrow_data::ArrayData;
use arrow_schema::{ArrowError, DataType, Field, Schema};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

use crate::errors::Result;

const SCHEMA_CAPSULE: &CStr = c"arrow_schema";
const ARRAY_CAPSULE: &CStr = c"arrow_array";

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<ArrowBatch>()?;
    Ok(())
}

/// A `RecordBatch` from any object with `__arrow_c_array__` that exports a struct array (a
/// `pyarrow.RecordBatch` does), sharing its buffers; the schema keeps its metadata.
///
/// Raises `TypeError` for an object without the protocol or an array that is not a struct, and
/// `ValueError` for a struct array with null rows or buffers that do not fit its lengths.
pub fn import_batch(obj: &Bound<'_, PyAny>) -> Result<RecordBatch> {
    let (field, data) = import(obj)?;
    let DataType::Struct(fields) = field.data_type() else {
        return Err(PyTypeError::new_err(format!(
            "expected a record batch (an Arrow struct array), got an Arrow array of type {}",
            field.data_type()
        ))
        .into());
    };
    let schema = Schema::new(fields.clone()).with_metadata(field.metadata().clone());
    let rows = data.len();
    let (_, columns, nulls) = StructArray::from(data).into_parts();
    if nulls.is_some_and(|n| n.null_count() > 0) {
        return Err(PyValueError::new_err(
            "a struct array with null rows is not a record batch; expected every row valid",
        )
        .into());
    }
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    Ok(RecordBatch::try_new_with_options(
        Arc::new(schema),
        columns,
        &options,
    )?)
}

/// An arrow-rs array from any object with `__arrow_c_array__`, sharing its buffers.
///
/// Raises `TypeError` for an object without the protocol and `ValueError` for buffers that do
/// not fit the array's lengths.
pub fn import_array(obj: &Bound<'_, PyAny>) -> Result<ArrayRef> {
    Ok(make_array(import(obj)?.1))
}

/// The field (name, type, metadata) and data `obj.__arrow_c_array__()` exports, checked to be
/// structurally sound (buffer sizes, offsets at the ends; not the UTF-8 of strings) so that
/// later reads cannot run past a buffer.
fn import(obj: &Bound<'_, PyAny>) -> Result<(Field, ArrayData)> {
    if !obj.hasattr("__arrow_c_array__")? {
        return Err(PyTypeError::new_err(format!(
            "expected an Arrow array or record batch (an object with __arrow_c_array__), got {}",
            obj.get_type().name()?
        ))
        .into());
    }
    let exported = obj.call_method0("__arrow_c_array__")?;
    let (schema, array): (Bound<'_, PyCapsule>, Bound<'_, PyCapsule>) = exported.extract()?;
    let schema: NonNull<FFI_ArrowSchema> = schema.pointer_checked(Some(SCHEMA_CAPSULE))?.cast();
    let array: NonNull<FFI_ArrowArray> = array.pointer_checked(Some(ARRAY_CAPSULE))?.cast();
    // SAFETY: capsules named "arrow_schema" and "arrow_array" hold an ArrowSchema and an
    // ArrowArray, the array laid out as the schema says (the protocol). The schema is only
    // borrowed while its capsule is alive; the array is moved out, which leaves a released one
    // behind, so the capsule's destructor does not release it a second time.
    let (field, data) = unsafe {
        let schema = schema.as_ref();
        let data = from_ffi(FFI_ArrowArray::from_raw(array.as_ptr()), schema)?;
        (Field::try_from(schema)?, data)
    };
    validate_layout(&data)?;
    Ok((field, data))
}

/// Buffer sizes and end offsets of `data` and all its children (O(number of arrays), no pass
/// over the values). The C Data import trusts its producer; this makes a malformed export an
/// error instead of an out-of-bounds read.
fn validate_layout(data: &ArrayData) -> std::result::Result<(), ArrowError> {
    data.validate()?;
    data.child_data().iter().try_for_each(validate_layout)
}

/// A `RecordBatch` made in Rust, for Python: implements the Arrow PyCapsule protocol
/// (`__arrow_c_array__`, `__arrow_c_schema__`), so `pyarrow.record_batch(batch)` takes it
/// without a copy. Each export shares the same buffers; the batch can be exported many times.
#[pyclass(module = "dpov2._core", frozen)]
pub struct ArrowBatch {
    batch: RecordBatch,
}

/// `batch` as a Python object that pyarrow (or any Arrow library) imports zero-copy.
pub fn export_batch(py: Python<'_>, batch: RecordBatch) -> PyResult<Bound<'_, ArrowBatch>> {
    Bound::new(py, ArrowBatch { batch })
}

#[pymethods]
impl ArrowBatch {
    /// Imports `batch` (any object with `__arrow_c_array__` exporting a struct array, such as
    /// a `pyarrow.RecordBatch`) into Rust, zero-copy; see [`import_batch`].
    #[new]
    fn new(batch: &Bound<'_, PyAny>) -> Result<Self> {
        Ok(Self {
            batch: import_batch(batch)?,
        })
    }

    /// `(schema capsule, array capsule)`: the batch as a struct array. A `requested_schema`
    /// is accepted and, as the protocol allows, not acted on: the batch comes as it is.
    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_array__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> Result<(Bound<'py, PyCapsule>, Bound<'py, PyCapsule>)> {
        let _ = requested_schema;
        let schema = self.__arrow_c_schema__(py)?;
        let data = StructArray::from(self.batch.clone()).into_data();
        let (array, _) = to_ffi(&data)?;
        let array = PyCapsule::new_with_value(py, array, ARRAY_CAPSULE)?;
        Ok((schema, array))
    }

    /// The schema (a struct type, with the schema's metadata) as an "arrow_schema" capsule.
    fn __arrow_c_schema__<'py>(&self, py: Python<'py>) -> Result<Bound<'py, PyCapsule>> {
        let schema = FFI_ArrowSchema::try_from(self.batch.schema().as_ref())?;
        // A capsule nobody imported drops its value, which releases the schema or array.
        Ok(PyCapsule::new_with_value(py, schema, SCHEMA_CAPSULE)?)
    }

    #[getter]
    fn num_rows(&self) -> usize {
        self.batch.num_rows()
    }

    fn __repr__(&self) -> String {
        format!(
            "ArrowBatch({} rows, schema {})",
            self.batch.num_rows(),
            self.batch.schema()
        )
    }
}
