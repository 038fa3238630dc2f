"""Every notebook in notebooks/ runs top to bottom, offline, without an error, and shows
what it teaches (each notebook is executed once; its key printed lines are checked)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.slow

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))

# lines each notebook must print: the answer to its seed question, computed for real
EXPECTED = {
    "01_tour": ['Model: "tiny" (Sequential, Keras 3)',
                # stem 144 + head 51 stay trainable; block1 (272 + BatchNorm 64) is frozen
                "195 trainable of 531"],
    "02_extract_specific_weights": [
        "plain Keras: (784, 10) (10,)",
        "weights before the first call: []",
        "hubwidgets: The model 'larger_model' (LargerModel) has not been built yet",
        "larger_model/custom_module/inner_dense1/kernel",
        "plain Keras, reloaded kernel equal: True"],
    "03_pretrained_models": [
        "plain Keras: 214 trainable of 320 variables",
        "hubwidgets:  25583592 trainable of 25636712 parameters",
        "hubwidgets: Add 0 parameters",
        "std before 0.05737, after 0.11473",
        # issue 17: seed 002's x2 both ways, then undo
        "hw.scale_weights equals plain Keras bit for bit: True",
        "std before 0.05737, after hw.scale_weights 0.11473",
        "after hw.undo, block1_conv1 restored bit for bit: True"],
    "04_tf_hub_modules": [
        "block2_dense  Dense               (None, 8)            136           136  trainable",
        "changed inside the module: ['block1_bn/moving_mean:0', 'block1_bn/moving_variance:0', "
        "'block2_dense/bias:0', 'block2_dense/kernel:0']",
        "    embedding   NameScope",
        "'StringSplitV2': 1"],
    "05_transfer_learning": [
        "165 trainable of 6661",
        "variables that changed: ['transfer/target_head/kernel', 'transfer/target_head/bias']",
        "2245 trainable of 6661 | needs compile: True",
        # issue 17: prune half of a layer, reset the head, undo each
        "block1_dense kernel: 2048 of 4096 values are zero",
        "block1_dense still frozen: True",
        "| the same as before pruning: True | weights bit for bit: True",
        "all undone, weights bit for bit: True",
        "| within 0.2 of chance: True",
        "after hw.undo, the trained head is back: True | weights bit for bit: True"],
    "06_watch_training": [
        "frozen base unchanged bit for bit: True",
        "changed: ['transfer/head_bn/gamma', 'transfer/head_bn/beta', "
        "'transfer/head_bn/moving_mean', 'transfer/head_bn/moving_variance', "
        "'transfer/head/kernel', 'transfer/head/bias']",
        "transfer/head_bn/moving_mean: BatchNormalization moving statistics",
        "transfer/base/block1_dense   0.00e+00 0.00e+00 0.00e+00 0.00e+00",
        "block2_dense update ratio, stage 1: [0.0, 0.0, 0.0, 0.0]",
        "block2_dense moves in stage 2: True",
        "block1_dense still frozen: True",
        "changed since pretraining: ['pretrain/base/block2_dense/kernel', "
        "'pretrain/base/block2_dense/bias']"],
    "07_lora_fine_tuning": [
        "bert_text_classifier_preprocessor",
        "query: LoRA rank 2, int8",
        "256 weights in 256 bytes (int8)",
        "params equal Keras' count_params(): True",
        "stored int8 codes: min -127 max 127",
        "backbone: only LoRA adapters moved: True",
        "head moved: True",
        "LoRA base kernels bit for bit: 4 of 4",
        "enable_lora froze it"],
    "08_activations": [
        "good: dead units {'hidden1': '12%', 'hidden2': '0%'}; dead layers: []",
        "bad: dead units {'hidden1': '84%', 'hidden2': '100%'}",
        "plain Keras, hidden2 dead units: 100% | hubwidgets: 100%",
        "transfer/base/block1     gradient norm 0.0000  frozen",
        "transfer/base/block2     gradient norm 0.0000  frozen",
        "weights unchanged by the probe: True",
        "plain TF, variables with a gradient: ['transfer/head/kernel', 'transfer/head/bias']",
        "head kernel norm, tape vs hubwidgets: 0.1196 0.1196",
        "feature maps of cnn/conv: (64, 6, 6, 8) | equal to a plain Keras sub-model: True"],
}


def test_every_notebook_has_expectations():
    assert sorted(EXPECTED) == [p.stem for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_and_teaches(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    errors = [o for o in outputs if o.get("output_type") == "error"]
    assert not errors
    text = "".join(o.get("text", "") or o.get("data", {}).get("text/plain", "") for o in outputs)
    missing = [line for line in EXPECTED[path.stem] if line not in text]
    assert not missing
    if "hw.explore" in "".join(c.source for c in nb.cells) or path.stem == "06_watch_training":
        assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {})
                   for o in outputs)
    assert path.stat().st_size < 100_000, "notebooks are committed without large outputs"
