#!/usr/bin/env python3
"""Write the small hand-built ONNX graphs the tests load (tests/data/onnx/):
each breaks one rule pouwd checks, or has no pouwd metadata, or (the
awkward encoder) uses names and subgraphs the ONNX exporter must handle.

    .venv/bin/python tools/make_onnx_fixtures.py

Needs the onnx package (tools/requirements.txt). The output is
deterministic: rerunning rewrites the same bytes.
"""

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "onnx")
FEATURES = 10


def mean_model(name, input_type=TensorProto.FLOAT, batch="batch", extra_input=False, doc=""):
    """prediction[b, 0] = mean over the features of row b (a MatMul by 1/10)."""
    weights = numpy_helper.from_array(np.full((FEATURES, 1), 0.1, dtype=np.float32), "weights")
    inputs = [helper.make_tensor_value_info("features", input_type, [batch, FEATURES])]
    nodes = []
    source = "features"
    if input_type != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", ["features"], ["as_float"], to=TensorProto.FLOAT))
        source = "as_float"
    nodes.append(helper.make_node("MatMul", [source, "weights"], ["prediction"]))
    if extra_input:
        inputs.append(helper.make_tensor_value_info("extra", TensorProto.FLOAT, [batch, 1]))
        nodes[-1] = helper.make_node("MatMul", [source, "weights"], ["mean"])
        nodes.append(helper.make_node("Add", ["mean", "extra"], ["prediction"]))
    graph = helper.make_graph(
        nodes, name, inputs,
        [helper.make_tensor_value_info("prediction", TensorProto.FLOAT, [batch, 1])],
        initializer=[weights], doc_string=doc)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)],
                              producer_name="pouwd tools/make_onnx_fixtures.py")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(OUT, f"{name}.onnx"))


def awkward_encoder():
    """An encoder for src/model/onnx_export.rs to embed: standardised rows z
    [batch, 10] in, embedding [batch, 3] = (3 z + 1) @ proj out, where
    proj[j, k] = (j + 1) (k + 1) / 64. It reads its input inside an If
    branch (a subgraph using an outer-scope value), names values like the
    exported graph's interface (`prediction`) and internal names
    (`pouwd_standardised`), names a node `pouwd_cast`, and lists an
    initializer among its graph inputs."""
    proj = np.array([[(j + 1) * (k + 1) / 64 for k in range(3)] for j in range(FEATURES)],
                    dtype=np.float32)
    initializers = [
        numpy_helper.from_array(np.array(2.0, dtype=np.float32), "two"),
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one"),
        numpy_helper.from_array(np.array(True), "always"),
        numpy_helper.from_array(proj, "proj"),
    ]

    def branch(op, name):
        return helper.make_graph(
            [helper.make_node(op, ["features", "one"], [f"{name}_out"], name=f"{name}_node")],
            name, [],
            [helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, ["batch", FEATURES])])

    nodes = [
        helper.make_node("Mul", ["features", "two"], ["pouwd_standardised"], name="pouwd_cast"),
        helper.make_node("If", ["always"], ["branch"], name="choose",
                         then_branch=branch("Add", "then"), else_branch=branch("Sub", "else")),
        helper.make_node("Add", ["pouwd_standardised", "branch"], ["prediction"], name="sum"),
        helper.make_node("MatMul", ["prediction", "proj"], ["embedding"], name="project"),
    ]
    graph = helper.make_graph(
        nodes, "awkward_encoder",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", FEATURES]),
         helper.make_tensor_value_info("proj", TensorProto.FLOAT, [FEATURES, 3])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 3])],
        initializer=initializers,
        value_info=[helper.make_tensor_value_info("prediction", TensorProto.FLOAT,
                                                  ["batch", FEATURES])],
        doc_string="an encoder with awkward names and a subgraph, for the ONNX exporter")
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)],
                              producer_name="pouwd tools/make_onnx_fixtures.py")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(OUT, "awkward_encoder.onnx"))


def main():
    os.makedirs(OUT, exist_ok=True)
    mean_model("mean", doc="a valid model without pouwd metadata: the mean of 10 features")
    mean_model("fixed_batch", batch=1, doc="the batch axis is fixed at 1")
    mean_model("int_input", input_type=TensorProto.INT64, doc="the input is int64")
    mean_model("two_inputs", extra_input=True, doc="two inputs")
    awkward_encoder()


if __name__ == "__main__":
    main()
