#!/usr/bin/env python3
"""Write the small hand-built ONNX graphs the tests load (tests/data/onnx/):
each breaks one rule pouwd checks, or has no pouwd metadata.

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


def main():
    os.makedirs(OUT, exist_ok=True)
    mean_model("mean", doc="a valid model without pouwd metadata: the mean of 10 features")
    mean_model("fixed_batch", batch=1, doc="the batch axis is fixed at 1")
    mean_model("int_input", input_type=TensorProto.INT64, doc="the input is int64")
    mean_model("two_inputs", extra_input=True, doc="two inputs")


if __name__ == "__main__":
    main()
