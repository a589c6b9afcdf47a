# `--config FILE.toml`: options come from the file's [train] section, the command line overrides
# them, and a bad value in the file is named like a command-line one.
source "$DPTRAIN_CLI_HELPERS/cli_common.sh"
cat > job.toml <<TOML
[train]
model = "mlp"
data = "$DATA"
limit-samples = 128
batch-size = 16
max-steps = 3
optimizer = "sgd"
lr = -1.0
metrics = ""
no-eval = true
TOML
expect_error config_value 2 "--lr must be a positive number, got -1" "$DPTRAIN" train --config job.toml
expect_ok config_override "$DPTRAIN" train --config job.toml --lr 0.1
grep -q "dptrain train: 3 steps" config_override.log || { cat config_override.log; fail "config values (max-steps 3) not applied"; }
grep -q "model mlp" config_override.log || { cat config_override.log; fail "config model not applied"; }
echo "ok: config file read, command line overrides it"
expect_error missing_config 2 "nothere.toml" "$DPTRAIN" train --config nothere.toml
