//! The BERT encoder, pooling and normalisation as an ONNX graph, built in
//! memory with ONNX Runtime's Model Editor API from `model.safetensors`.
//!
//! No ONNX file of the model exists, and exporting one would need PyTorch, so
//! the graph is written here from standard ONNX operators (opset 17). It has
//! the shape a PyTorch export of Hugging Face's `BertModel` has (separate
//! query/key/value projections, `Div` by √head_size, an additive mask built by
//! `Unsqueeze → Cast → Sub → Mul`, erf GELU), which is what ONNX Runtime's
//! graph optimiser recognises when it fuses attention, GELU and
//! skip-layer-normalisation for the CPU.

use ort::editor::{Graph, Model, Node, Opset, ONNX_DOMAIN};
use ort::memory::Allocator;
use ort::operator::Attribute;
use ort::value::{Outlet, Shape, SymbolicDimensions, Tensor, TensorElementType, ValueType};
use projsync_embed::{EmbedError, Result};
use safetensors::{Dtype, SafeTensors};

use crate::folder::{BertConfig, ModelFolder, Pooling};

pub(crate) const INPUT_IDS: &str = "input_ids";
pub(crate) const ATTENTION_MASK: &str = "attention_mask";
pub(crate) const OUTPUT: &str = "sentence_embedding";

const OPSET: u32 = 17;
/// `TensorProto.FLOAT`, for `Cast`.
const FLOAT: i64 = 1;

/// Builds the model: `input_ids`, `attention_mask` (both `int64 [batch,
/// sequence]`) in, `sentence_embedding` (`float [batch, hidden]`, unit
/// length) out.
pub(crate) fn build_model(folder: &ModelFolder) -> Result<Model> {
    let bytes = std::fs::read(&folder.weights).map_err(|e| {
        EmbedError::fatal(format!(
            "cannot read model weights {}: {e}",
            folder.weights.display()
        ))
    })?;
    let tensors = SafeTensors::deserialize(&bytes).map_err(|e| {
        EmbedError::fatal(format!(
            "cannot read model weights {}: {e}; the file must be in safetensors format",
            folder.weights.display()
        ))
    })?;
    let weights = Weights::new(tensors, folder)?;

    let mut b = Builder::new()?;
    b.graph
        .set_inputs([
            Outlet::new(INPUT_IDS, batch_by_sequence(TensorElementType::Int64)),
            Outlet::new(ATTENTION_MASK, batch_by_sequence(TensorElementType::Int64)),
        ])
        .map_err(ort_error)?;
    b.graph
        .set_outputs([Outlet::new(
            OUTPUT,
            ValueType::Tensor {
                ty: TensorElementType::Float32,
                shape: Shape::new([-1, folder.config.hidden_size as i64]),
                dimension_symbols: SymbolicDimensions::empty(2),
            },
        )])
        .map_err(ort_error)?;

    let config = &folder.config;
    let mut hidden = embeddings(&mut b, &weights, config)?;
    let mask = attention_bias(&mut b)?;
    for layer in 0..config.num_hidden_layers {
        hidden = encoder_layer(&mut b, &weights, config, layer, &hidden, &mask)?;
    }
    let pooled = match folder.pooling {
        Pooling::Mean => mean_pool(&mut b, &hidden)?,
        Pooling::Cls => {
            let zero = b.i64_scalar("cls_index", 0)?;
            b.op(
                "pool",
                "Gather",
                &[&hidden, &zero],
                vec![attr("axis", 1i64)?],
            )?
        }
    };
    l2_normalize(&mut b, &pooled, OUTPUT)?;

    let mut model =
        Model::new([Opset::new(ONNX_DOMAIN, OPSET).map_err(ort_error)?]).map_err(ort_error)?;
    model.set_graph(b.graph).map_err(ort_error)?;
    Ok(model)
}

fn batch_by_sequence(ty: TensorElementType) -> ValueType {
    ValueType::Tensor {
        ty,
        shape: Shape::new([-1, -1]),
        // Unnamed: through ort 2.0.0-rc.15 and ONNX Runtime 1.31 every
        // dimension ends up with the first name given, which would declare
        // batch == sequence.
        dimension_symbols: SymbolicDimensions::empty(2),
    }
}

/// Word + position (+ token type 0) embeddings, then LayerNorm.
fn embeddings(b: &mut Builder, w: &Weights<'_>, c: &BertConfig) -> Result<String> {
    let h = c.hidden_size;
    let words = w.matrix("embeddings.word_embeddings.weight", c.vocab_size, h)?;
    let mut positions = w.matrix(
        "embeddings.position_embeddings.weight",
        c.max_position_embeddings,
        h,
    )?;
    let types = w.matrix(
        "embeddings.token_type_embeddings.weight",
        c.type_vocab_size,
        h,
    )?;
    // Every input is a single sequence, so its token type is always 0: fold
    // that row into the position table instead of adding it at run time.
    for row in positions.chunks_exact_mut(h) {
        for (p, t) in row.iter_mut().zip(&types[..h]) {
            *p += t;
        }
    }
    let words = b.f32_init("embeddings.words", &[c.vocab_size, h], &words)?;
    let positions = b.f32_init(
        "embeddings.positions",
        &[c.max_position_embeddings, h],
        &positions,
    )?;

    let gathered = b.op("embeddings", "Gather", &[&words, INPUT_IDS], vec![])?;
    let shape = b.op("embeddings", "Shape", &[INPUT_IDS], vec![])?;
    let one = b.i64_init("embeddings.dim1", &[1], &[1])?;
    let seq_len = b.op("embeddings", "Gather", &[&shape, &one], vec![])?;
    let zero = b.i64_init("embeddings.zero", &[1], &[0])?;
    let pos = b.op(
        "embeddings",
        "Slice",
        &[&positions, &zero, &seq_len, &zero],
        vec![],
    )?;
    let sum = b.op("embeddings", "Add", &[&gathered, &pos], vec![])?;
    layer_norm(b, w, c, "embeddings.LayerNorm", "embeddings", &sum)
}

/// `(1 - mask) * -10000`, shaped `[batch, 1, 1, sequence]`, added to the
/// attention scores so that padding gets no weight.
fn attention_bias(b: &mut Builder) -> Result<String> {
    let axis1 = b.i64_init("mask.axis1", &[1], &[1])?;
    let axis2 = b.i64_init("mask.axis2", &[1], &[2])?;
    let u1 = b.op("mask", "Unsqueeze", &[ATTENTION_MASK, &axis1], vec![])?;
    let u2 = b.op("mask", "Unsqueeze", &[&u1, &axis2], vec![])?;
    let cast = b.op("mask", "Cast", &[&u2], vec![attr("to", FLOAT)?])?;
    let one = b.f32_scalar("mask.one", 1.0)?;
    let inverted = b.op("mask", "Sub", &[&one, &cast], vec![])?;
    let big = b.f32_scalar("mask.negative", -10000.0)?;
    b.op("mask", "Mul", &[&inverted, &big], vec![])
}

fn encoder_layer(
    b: &mut Builder,
    w: &Weights<'_>,
    c: &BertConfig,
    layer: usize,
    input: &str,
    mask: &str,
) -> Result<String> {
    let p = format!("encoder.layer.{layer}");
    let scope = format!("layer{layer}");
    let (h, heads, head_size) = (c.hidden_size, c.num_attention_heads, c.head_size());

    let split_shape = b.i64_init(
        &format!("{scope}.split_heads"),
        &[4],
        &[0, 0, heads as i64, head_size as i64],
    )?;
    let merge_shape = b.i64_init(&format!("{scope}.merge_heads"), &[3], &[0, 0, h as i64])?;

    let project = |b: &mut Builder, name: &str, perm: [i64; 4]| -> Result<String> {
        let x = linear(
            b,
            w,
            &format!("{p}.attention.self.{name}"),
            &scope,
            input,
            h,
            h,
        )?;
        let x = b.op(&scope, "Reshape", &[&x, &split_shape], vec![])?;
        b.op(
            &scope,
            "Transpose",
            &[&x],
            vec![attr("perm", perm.to_vec())?],
        )
    };
    let q = project(b, "query", [0, 2, 1, 3])?;
    let k = project(b, "key", [0, 2, 3, 1])?;
    let v = project(b, "value", [0, 2, 1, 3])?;

    let scores = b.op(&scope, "MatMul", &[&q, &k], vec![])?;
    let scale = b.f32_scalar(&format!("{scope}.scale"), (head_size as f32).sqrt())?;
    let scores = b.op(&scope, "Div", &[&scores, &scale], vec![])?;
    let scores = b.op(&scope, "Add", &[&scores, mask], vec![])?;
    let probs = b.op(&scope, "Softmax", &[&scores], vec![attr("axis", -1i64)?])?;
    let context = b.op(&scope, "MatMul", &[&probs, &v], vec![])?;
    let context = b.op(
        &scope,
        "Transpose",
        &[&context],
        vec![attr("perm", vec![0i64, 2, 1, 3])?],
    )?;
    let context = b.op(&scope, "Reshape", &[&context, &merge_shape], vec![])?;
    let attended = linear(
        b,
        w,
        &format!("{p}.attention.output.dense"),
        &scope,
        &context,
        h,
        h,
    )?;
    let residual = b.op(&scope, "Add", &[&attended, input], vec![])?;
    let x = layer_norm(
        b,
        w,
        c,
        &format!("{p}.attention.output.LayerNorm"),
        &scope,
        &residual,
    )?;

    let inner = linear(
        b,
        w,
        &format!("{p}.intermediate.dense"),
        &scope,
        &x,
        h,
        c.intermediate_size,
    )?;
    let inner = gelu(b, &scope, &inner)?;
    let out = linear(
        b,
        w,
        &format!("{p}.output.dense"),
        &scope,
        &inner,
        c.intermediate_size,
        h,
    )?;
    let residual = b.op(&scope, "Add", &[&out, &x], vec![])?;
    layer_norm(b, w, c, &format!("{p}.output.LayerNorm"), &scope, &residual)
}

/// `x @ W + b`, with `W` stored by PyTorch as `[out, in]`.
fn linear(
    b: &mut Builder,
    w: &Weights<'_>,
    name: &str,
    scope: &str,
    input: &str,
    inputs: usize,
    outputs: usize,
) -> Result<String> {
    let weight = w.matrix(&format!("{name}.weight"), outputs, inputs)?;
    let mut transposed = vec![0f32; weight.len()];
    for (o, row) in weight.chunks_exact(inputs).enumerate() {
        for (i, value) in row.iter().enumerate() {
            transposed[i * outputs + o] = *value;
        }
    }
    let bias = w.vector(&format!("{name}.bias"), outputs)?;
    let weight = b.f32_init(&format!("{name}.weight"), &[inputs, outputs], &transposed)?;
    let bias = b.f32_init(&format!("{name}.bias"), &[outputs], &bias)?;
    let product = b.op(scope, "MatMul", &[input, &weight], vec![])?;
    b.op(scope, "Add", &[&product, &bias], vec![])
}

fn layer_norm(
    b: &mut Builder,
    w: &Weights<'_>,
    c: &BertConfig,
    name: &str,
    scope: &str,
    input: &str,
) -> Result<String> {
    let h = c.hidden_size;
    let gamma = w.vector_any(&[&format!("{name}.weight"), &format!("{name}.gamma")], h)?;
    let beta = w.vector_any(&[&format!("{name}.bias"), &format!("{name}.beta")], h)?;
    let gamma = b.f32_init(&format!("{name}.weight"), &[h], &gamma)?;
    let beta = b.f32_init(&format!("{name}.bias"), &[h], &beta)?;
    b.op(
        scope,
        "LayerNormalization",
        &[input, &gamma, &beta],
        vec![
            attr("axis", -1i64)?,
            attr("epsilon", c.layer_norm_eps as f32)?,
        ],
    )
}

/// `x * 0.5 * (1 + erf(x / √2))`, the exact GELU BERT uses.
fn gelu(b: &mut Builder, scope: &str, x: &str) -> Result<String> {
    let sqrt2 = b.f32_scalar(&format!("{scope}.sqrt2"), std::f32::consts::SQRT_2)?;
    let one = b.f32_scalar(&format!("{scope}.gelu_one"), 1.0)?;
    let half = b.f32_scalar(&format!("{scope}.gelu_half"), 0.5)?;
    let scaled = b.op(scope, "Div", &[x, &sqrt2], vec![])?;
    let erf = b.op(scope, "Erf", &[&scaled], vec![])?;
    let shifted = b.op(scope, "Add", &[&erf, &one], vec![])?;
    let gated = b.op(scope, "Mul", &[x, &shifted], vec![])?;
    b.op(scope, "Mul", &[&gated, &half], vec![])
}

/// Mean of the token vectors where the attention mask is 1.
fn mean_pool(b: &mut Builder, hidden: &str) -> Result<String> {
    let axis2 = b.i64_init("pool.axis2", &[1], &[2])?;
    let axis1 = b.i64_init("pool.axis1", &[1], &[1])?;
    let tiny = b.f32_scalar("pool.min_count", 1e-9)?;
    let mask = b.op("pool", "Cast", &[ATTENTION_MASK], vec![attr("to", FLOAT)?])?;
    let mask = b.op("pool", "Unsqueeze", &[&mask, &axis2], vec![])?;
    let masked = b.op("pool", "Mul", &[hidden, &mask], vec![])?;
    let keep = vec![attr("keepdims", 0i64)?];
    let sum = b.op("pool", "ReduceSum", &[&masked, &axis1], keep)?;
    let keep = vec![attr("keepdims", 0i64)?];
    let count = b.op("pool", "ReduceSum", &[&mask, &axis1], keep)?;
    let count = b.op("pool", "Max", &[&count, &tiny], vec![])?;
    b.op("pool", "Div", &[&sum, &count], vec![])
}

/// `x / max(‖x‖₂, 1e-12)` per row, as `torch.nn.functional.normalize`.
fn l2_normalize(b: &mut Builder, x: &str, output: &str) -> Result<()> {
    let eps = b.f32_scalar("normalize.eps", 1e-12)?;
    let norm = b.op(
        "normalize",
        "ReduceL2",
        &[x],
        vec![attr("axes", vec![1i64])?, attr("keepdims", 1i64)?],
    )?;
    let norm = b.op("normalize", "Max", &[&norm, &eps], vec![])?;
    b.op_to("normalize", "Div", &[x, &norm], output, vec![])?;
    Ok(())
}

/// A graph under construction: unique names for nodes and values, and the
/// initializers copied into memory ONNX Runtime owns.
struct Builder {
    graph: Graph,
    allocator: Allocator,
    count: usize,
}

impl Builder {
    fn new() -> Result<Self> {
        Ok(Self {
            graph: Graph::new().map_err(ort_error)?,
            allocator: Allocator::default(),
            count: 0,
        })
    }

    /// Adds `op_type(inputs)` and returns the name of its (single) output.
    fn op(
        &mut self,
        scope: &str,
        op_type: &str,
        inputs: &[&str],
        attributes: Vec<Attribute>,
    ) -> Result<String> {
        let output = format!("{scope}/{op_type}_{}", self.count);
        self.op_to(scope, op_type, inputs, &output, attributes)?;
        Ok(output)
    }

    fn op_to(
        &mut self,
        scope: &str,
        op_type: &str,
        inputs: &[&str],
        output: &str,
        attributes: Vec<Attribute>,
    ) -> Result<()> {
        self.count += 1;
        let name = format!("{scope}/{op_type}_node_{}", self.count);
        let node = Node::new(op_type, ONNX_DOMAIN, name, inputs, [output], attributes)
            .map_err(ort_error)?;
        self.graph.add_node(node).map_err(ort_error)
    }

    fn f32_init(&mut self, name: &str, shape: &[usize], data: &[f32]) -> Result<String> {
        let mut tensor =
            Tensor::<f32>::new(&self.allocator, shape.to_vec().as_slice()).map_err(ort_error)?;
        tensor.extract_tensor_mut().1.copy_from_slice(data);
        self.graph
            .add_initializer(name, tensor, false)
            .map_err(ort_error)?;
        Ok(name.to_string())
    }

    fn f32_scalar(&mut self, name: &str, value: f32) -> Result<String> {
        self.f32_init(name, &[], &[value])
    }

    fn i64_init(&mut self, name: &str, shape: &[usize], data: &[i64]) -> Result<String> {
        let mut tensor =
            Tensor::<i64>::new(&self.allocator, shape.to_vec().as_slice()).map_err(ort_error)?;
        tensor.extract_tensor_mut().1.copy_from_slice(data);
        self.graph
            .add_initializer(name, tensor, false)
            .map_err(ort_error)?;
        Ok(name.to_string())
    }

    fn i64_scalar(&mut self, name: &str, value: i64) -> Result<String> {
        self.i64_init(name, &[], &[value])
    }
}

/// The tensors of `model.safetensors`, read as f32, under the name prefix
/// the checkpoint uses (`bert.` when saved from a task model).
struct Weights<'a> {
    tensors: SafeTensors<'a>,
    prefix: &'static str,
    path: String,
}

impl<'a> Weights<'a> {
    fn new(tensors: SafeTensors<'a>, folder: &ModelFolder) -> Result<Self> {
        let path = folder.weights.display().to_string();
        let probe = "embeddings.word_embeddings.weight";
        let prefix = ["", "bert.", "model."]
            .into_iter()
            .find(|p| tensors.tensor(&format!("{p}{probe}")).is_ok())
            .ok_or_else(|| {
                EmbedError::fatal(format!(
                    "{path} holds no {probe}; it is not the checkpoint of a BERT model"
                ))
            })?;
        Ok(Self {
            tensors,
            prefix,
            path,
        })
    }

    fn read(&self, name: &str) -> Result<Option<(Vec<usize>, Vec<f32>)>> {
        let Ok(view) = self.tensors.tensor(&format!("{}{name}", self.prefix)) else {
            return Ok(None);
        };
        let data = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|c| f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16))
                .collect(),
            other => {
                return Err(EmbedError::fatal(format!(
                "{}: tensor {name} is {other:?}; the local provider reads F32, F16 or BF16 weights",
                self.path
            )))
            }
        };
        Ok(Some((view.shape().to_vec(), values)))
    }

    fn shaped(&self, names: &[&str], shape: &[usize]) -> Result<Vec<f32>> {
        for name in names {
            if let Some((found, values)) = self.read(name)? {
                if found != shape {
                    return Err(EmbedError::fatal(format!(
                        "{}: tensor {name} has shape {found:?}, config.json implies {shape:?}",
                        self.path
                    )));
                }
                return Ok(values);
            }
        }
        Err(EmbedError::fatal(format!(
            "{}: tensor {} is missing; the file does not match config.json",
            self.path, names[0]
        )))
    }

    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Vec<f32>> {
        self.shaped(&[name], &[rows, cols])
    }

    fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>> {
        self.shaped(&[name], &[len])
    }

    fn vector_any(&self, names: &[&str], len: usize) -> Result<Vec<f32>> {
        self.shaped(names, &[len])
    }
}

fn f16_to_f32(bits: u16) -> f32 {
    let negative = bits >> 15 == 1;
    let exponent = u32::from((bits >> 10) & 0x1f);
    let mantissa = u32::from(bits & 0x3ff);
    let magnitude = match exponent {
        // Zero and subnormals: mantissa × 2^-24.
        0 => mantissa as f32 * f32::powi(2.0, -24),
        0x1f => f32::from_bits(0x7f80_0000 | (mantissa << 13)),
        e => f32::from_bits(((e + 127 - 15) << 23) | (mantissa << 13)),
    };
    if negative {
        -magnitude
    } else {
        magnitude
    }
}

fn attr(name: &str, value: impl ort::operator::ToAttribute) -> Result<Attribute> {
    Attribute::new(name, value).map_err(ort_error)
}

fn ort_error<R>(e: ort::Error<R>) -> EmbedError {
    EmbedError::fatal(format!("cannot build the model graph: {e}"))
}

#[cfg(test)]
mod tests {
    use super::f16_to_f32;

    #[test]
    fn f16_converts_normals_subnormals_and_specials() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert_eq!(f16_to_f32(0x0001), 5.960_464_5e-8);
        assert_eq!(f16_to_f32(0x8001), -5.960_464_5e-8);
        assert_eq!(f16_to_f32(0x0000), 0.0);
        assert!(f16_to_f32(0x7c00).is_infinite());
        assert!(f16_to_f32(0x7e00).is_nan());
    }
}
