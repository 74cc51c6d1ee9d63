//! The layer's configuration: a serde struct, validated once at load time.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Gate variants from Greff et al. 2017, "LSTM: A Search Space Odyssey".
/// Each variant allocates only the gate blocks it uses (see [`Variant::gates`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// PyTorch's `nn.LSTM`: i, f, g, o gates, no peepholes.
    #[default]
    Vanilla,
    /// Peephole connections: i and f see c_{t-1}, o sees c_t (diagonal weights `weight_ch_l{k}`).
    Peephole,
    /// Coupled input and forget gate: i = 1 − f.
    Cifg,
    /// No output gate: o ≡ 1, h = tanh(c).
    Nog,
    /// No output activation: h = o ⊙ c.
    Noaf,
    /// No input gate: i ≡ 1.
    Nig,
    /// No forget gate: f ≡ 1.
    Nfg,
    /// No input activation: g = W·[h, x] + b without tanh.
    Niaf,
}

/// One gate block of the stacked weight matrices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// The input gate i.
    Input,
    /// The forget gate f.
    Forget,
    /// The cell candidate g.
    Cell,
    /// The output gate o.
    Output,
}

/// What a gate variant computes, as the switches both cells branch on (the op-by-op
/// [`crate::cell`] and the fused kernel's `fused::cell`). Derived from [`Variant`] by
/// [`Variant::spec`]; an absent gate reads as 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CellSpec {
    /// The input gate has parameters (otherwise i ≡ 1, or i = 1 − f when `coupled`).
    pub input_gate: bool,
    /// cifg: i = 1 − f (implies `!input_gate`).
    pub coupled: bool,
    /// The forget gate has parameters (otherwise f ≡ 1).
    pub forget_gate: bool,
    /// The output gate has parameters (otherwise o ≡ 1).
    pub output_gate: bool,
    /// g = tanh(z_g) (otherwise g = z_g).
    pub input_activation: bool,
    /// h = o ⊙ tanh(c) (otherwise h = o ⊙ c).
    pub output_activation: bool,
    /// i and f see c_{t-1}, o sees c_t, through diagonal weights.
    pub peephole: bool,
}

impl CellSpec {
    /// PyTorch's `nn.LSTM` cell: every gate, both activations, no peepholes.
    pub const VANILLA: CellSpec = CellSpec {
        input_gate: true,
        coupled: false,
        forget_gate: true,
        output_gate: true,
        input_activation: true,
        output_activation: true,
        peephole: false,
    };

    /// Gates with parameters, in PyTorch order (0 = i, 1 = f, 2 = g, 3 = o): the row blocks
    /// of the weights, as [`Variant::gates`] lists them.
    pub fn gates(&self) -> Vec<usize> {
        let mut g = Vec::with_capacity(4);
        if self.input_gate {
            g.push(0);
        }
        if self.forget_gate {
            g.push(1);
        }
        g.push(2);
        if self.output_gate {
            g.push(3);
        }
        g
    }
}

impl From<Variant> for CellSpec {
    fn from(v: Variant) -> CellSpec {
        v.spec()
    }
}

impl Variant {
    /// Every variant, in the order of the paper's table.
    pub const ALL: [Variant; 8] = [
        Variant::Vanilla,
        Variant::Peephole,
        Variant::Cifg,
        Variant::Nog,
        Variant::Noaf,
        Variant::Nig,
        Variant::Nfg,
        Variant::Niaf,
    ];

    /// The gate blocks stacked (in this order, each `hidden_size` rows) in `weight_ih`,
    /// `weight_hh` and the biases: PyTorch's order i, f, g, o with unused gates left out.
    pub fn gates(self) -> &'static [Gate] {
        use Gate::*;
        match self {
            Variant::Vanilla | Variant::Peephole | Variant::Noaf | Variant::Niaf => &[Input, Forget, Cell, Output],
            Variant::Cifg | Variant::Nig => &[Forget, Cell, Output],
            Variant::Nog => &[Input, Forget, Cell],
            Variant::Nfg => &[Input, Cell, Output],
        }
    }

    /// What the variant computes. Exhaustive: a new variant does not compile until it says
    /// which gates and activations it has.
    pub const fn spec(self) -> CellSpec {
        let v = CellSpec::VANILLA;
        match self {
            Variant::Vanilla => v,
            Variant::Peephole => CellSpec { peephole: true, ..v },
            Variant::Cifg => CellSpec { input_gate: false, coupled: true, ..v },
            Variant::Nog => CellSpec { output_gate: false, ..v },
            Variant::Noaf => CellSpec { output_activation: false, ..v },
            Variant::Nig => CellSpec { input_gate: false, ..v },
            Variant::Nfg => CellSpec { forget_gate: false, ..v },
            Variant::Niaf => CellSpec { input_activation: false, ..v },
        }
    }

    /// The config name (`"vanilla"`, `"peephole"`, ...), as serde writes it.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Vanilla => "vanilla",
            Variant::Peephole => "peephole",
            Variant::Cifg => "cifg",
            Variant::Nog => "nog",
            Variant::Noaf => "noaf",
            Variant::Nig => "nig",
            Variant::Nfg => "nfg",
            Variant::Niaf => "niaf",
        }
    }
}

/// The recurrent cell run by [`crate::Lstm`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CellKind {
    /// The LSTM cell ([`crate::cell`]), in the gate variant of [`LstmConfig::variant`].
    #[default]
    Lstm,
    /// PyTorch's `nn.GRU` (gate order r, z, n).
    Gru,
    /// Elman RNN with tanh, PyTorch's `nn.RNN`.
    Rnn,
}

impl CellKind {
    /// Number of `hidden_size` blocks stacked in the weight matrices (LSTM: see [`Variant::gates`]).
    pub fn blocks(self, variant: Variant) -> usize {
        match self {
            CellKind::Lstm => variant.gates().len(),
            CellKind::Gru => 3,
            CellKind::Rnn => 1,
        }
    }
}

fn default_layers() -> usize {
    1
}
fn default_true() -> bool {
    true
}

/// Configuration of [`crate::Lstm`]. Defaults (via serde or [`LstmConfig::new`]) give
/// PyTorch's `nn.LSTM(input_size, hidden_size, batch_first=True)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LstmConfig {
    /// Features per input step.
    pub input_size: usize,
    /// Features of h (and c) per direction.
    pub hidden_size: usize,
    /// Stacked layers; layer k > 0 reads layer k−1's output (both directions concatenated).
    #[serde(default = "default_layers")]
    pub num_layers: usize,
    /// Add a direction that reads each sequence right to left over its real tokens.
    #[serde(default)]
    pub bidirectional: bool,
    /// Gate variant (LSTM only).
    #[serde(default)]
    pub variant: Variant,
    /// "lstm", "gru" or "rnn".
    #[serde(default)]
    pub cell: CellKind,
    /// Dropout probability on the outputs of every layer but the last (as PyTorch), in [0, 1).
    #[serde(default)]
    pub dropout: f64,
    /// One dropout mask per sequence, shared over time (Gal & Ghahramani), instead of one per step.
    #[serde(default)]
    pub variational_dropout: bool,
    /// Initialise each gate block of `weight_hh` as an orthogonal matrix instead of U(−k, k).
    #[serde(default)]
    pub orthogonal_init: bool,
    /// Initial forget-gate bias: 0.0 keeps PyTorch's U(−k, k); otherwise the forget block of
    /// `bias_ih` is set to this value and that of `bias_hh` to 0 (Keras' unit_forget_bias = 1.0).
    #[serde(default)]
    pub forget_bias: f64,
    /// Use the fused CPU kernel where available (same numbers as the op-by-op path).
    #[serde(default = "default_true")]
    pub fused: bool,
}

impl LstmConfig {
    /// A one-layer, unidirectional, vanilla LSTM: PyTorch's defaults.
    pub fn new(input_size: usize, hidden_size: usize) -> Self {
        Self {
            input_size,
            hidden_size,
            num_layers: 1,
            bidirectional: false,
            variant: Variant::Vanilla,
            cell: CellKind::Lstm,
            dropout: 0.0,
            variational_dropout: false,
            orthogonal_init: false,
            forget_bias: 0.0,
            fused: true,
        }
    }

    /// 2 when bidirectional, else 1.
    pub fn num_directions(&self) -> usize {
        if self.bidirectional {
            2
        } else {
            1
        }
    }

    /// Width of the layer's output: directions × hidden_size.
    pub fn output_size(&self) -> usize {
        self.num_directions() * self.hidden_size
    }

    /// Checks ranges and combinations; the error names the offending key.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, msg: String| Err(Error::Config { key: key.to_string(), msg });
        if self.input_size == 0 {
            return bad("input_size", "must be at least 1".into());
        }
        if self.hidden_size == 0 {
            return bad("hidden_size", "must be at least 1".into());
        }
        if self.num_layers == 0 {
            return bad("num_layers", "must be at least 1".into());
        }
        if !(self.dropout >= 0.0 && self.dropout < 1.0) {
            return bad("dropout", format!("must be in [0, 1), got {}", self.dropout));
        }
        if !self.forget_bias.is_finite() {
            return bad("forget_bias", format!("must be finite, got {}", self.forget_bias));
        }
        if self.cell != CellKind::Lstm && self.variant != Variant::Vanilla {
            return bad("variant", format!("gate variant \"{}\" applies only to cell = \"lstm\"", self.variant.name()));
        }
        if self.forget_bias != 0.0 && (self.cell != CellKind::Lstm || !self.variant.gates().contains(&Gate::Forget)) {
            return bad(
                "forget_bias",
                "needs an LSTM with a forget gate (cell = \"lstm\", variant other than \"nfg\")".into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_names_and_defaults() {
        let cfg: LstmConfig =
            serde_json::from_str(r#"{"input_size": 3, "hidden_size": 4, "variant": "cifg"}"#).unwrap();
        assert_eq!(cfg.variant, Variant::Cifg);
        assert_eq!(cfg.cell, CellKind::Lstm);
        assert!(cfg.fused);
        assert_eq!(cfg.num_layers, 1);
        for v in Variant::ALL {
            assert_eq!(serde_json::to_string(&v).unwrap(), format!("\"{}\"", v.name()));
        }
        assert_eq!(serde_json::to_string(&CellKind::Gru).unwrap(), "\"gru\"");
        let back: LstmConfig = serde_json::from_str(&serde_json::to_string(&cfg).unwrap()).unwrap();
        assert_eq!(back, cfg);
    }

    #[test]
    fn spec_gates_match_the_weight_blocks() {
        for v in Variant::ALL {
            let blocks: Vec<usize> = v.gates().iter().map(|g| *g as usize).collect();
            assert_eq!(v.spec().gates(), blocks, "{v:?}");
            assert_eq!(CellSpec::from(v), v.spec());
        }
        assert_eq!(Variant::Vanilla.spec(), CellSpec::VANILLA);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let e = serde_json::from_str::<LstmConfig>(r#"{"input_size": 3, "hidden_size": 4, "layers": 2}"#).unwrap_err();
        assert!(e.to_string().contains("layers"), "{e}");
        let mut cfg = LstmConfig::new(3, 4);
        cfg.dropout = 1.0;
        assert!(cfg.validate().unwrap_err().to_string().contains("`dropout`"));
        let mut cfg = LstmConfig::new(3, 4);
        cfg.cell = CellKind::Gru;
        cfg.variant = Variant::Nog;
        assert!(cfg.validate().unwrap_err().to_string().contains("`variant`"));
        let mut cfg = LstmConfig::new(3, 0);
        assert!(cfg.validate().unwrap_err().to_string().contains("`hidden_size`"));
        cfg.hidden_size = 2;
        cfg.variant = Variant::Nfg;
        cfg.forget_bias = 1.0;
        assert!(cfg.validate().unwrap_err().to_string().contains("`forget_bias`"));
    }
}
