"""Writes the TF checkpoint fixtures of tests/test_convert.py (needs TensorFlow + tf_keras;
the tests themselves need neither). Run from the repository root:

    python tests/data/tf_ckpt/make_fixtures.py

Each case is a directory with the checkpoint (``model.index`` + ``model.data-*``, no .meta) and
``expected.npz``: every variable (key ``var:<name>``) as TF reads it back, the input ``x``, the
``sequence_length`` used, and TF's outputs (``out*``) and final states (``state*``), computed
in graph mode with the saved weights.
"""
import os
import shutil

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
rc = tf.compat.v1.nn.rnn_cell
v1 = tf.compat.v1


def flat(state):
    if isinstance(state, (tuple, list)):
        return [a for s in state for a in flat(s)]
    return [state]


def save(name, build, B, T, I, dtype, shards=1):
    """build(x, lengths) -> (outputs, state) inside a graph; saves and records everything."""
    out_dir = os.path.join(HERE, name)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    rng = np.random.default_rng(len(name))
    x = rng.standard_normal((B, T, I)).astype(dtype)
    lengths = np.array([T - k % T for k in range(B)], dtype=np.int32)
    g = tf.Graph()
    config = v1.ConfigProto(device_count={"CPU": shards})
    with g.as_default():
        xin = v1.placeholder(dtype, [B, T, I])
        lin = v1.placeholder(tf.int32, [B])
        outs, state = build(xin, lin)
        saver = v1.train.Saver(sharded=shards > 1)
        with v1.Session(config=config) as s:
            s.run(v1.global_variables_initializer())
            for v in v1.global_variables():        # non-trivial biases too
                val = s.run(v)
                v.load(val + rng.uniform(-0.3, 0.3, val.shape).astype(val.dtype), s)
            prefix = saver.save(s, os.path.join(out_dir, "model"), write_meta_graph=False)
            got = s.run([flat(outs), flat(state)], {xin: x, lin: lengths})
            names = [v.name.split(":")[0] for v in v1.global_variables()]
    for f in os.listdir(out_dir):
        if f == "checkpoint":
            os.remove(os.path.join(out_dir, f))
    reader = tf.train.load_checkpoint(prefix)
    arrays = {"var:" + n: reader.get_tensor(n) for n in names}
    arrays.update(x=x, sequence_length=lengths)
    arrays.update({f"out{k}": a for k, a in enumerate(got[0])})
    arrays.update({f"state{k}": a for k, a in enumerate(got[1])})
    np.savez_compressed(os.path.join(out_dir, "expected.npz"), **arrays)
    print(name, sorted(os.listdir(out_dir)), names)


def basic_lstm(x, lengths):
    return v1.nn.dynamic_rnn(rc.BasicLSTMCell(4), x, sequence_length=lengths,
                             dtype=tf.float32)


def multi_gru_lstm(x, lengths):
    cell = rc.MultiRNNCell([rc.GRUCell(5), rc.LSTMCell(4, use_peepholes=True, num_proj=3)])
    return v1.nn.dynamic_rnn(cell, x, sequence_length=lengths, dtype=tf.float32)


def bidir_gru_f64(x, lengths):
    (o_fw, o_bw), (s_fw, s_bw) = v1.nn.bidirectional_dynamic_rnn(
        rc.GRUCell(3, dtype=tf.float64), rc.GRUCell(3, dtype=tf.float64), x,
        sequence_length=lengths, dtype=tf.float64)
    return (o_fw, o_bw), (s_fw, s_bw)


def sharded_rnn(x, lengths):
    with tf.device("/cpu:0"):
        h = v1.nn.dynamic_rnn(rc.BasicRNNCell(3), x, sequence_length=lengths,
                              dtype=tf.float32, scope="a")[0]
    with tf.device("/cpu:1"):
        return v1.nn.dynamic_rnn(rc.BasicRNNCell(2, activation=tf.nn.relu), h,
                                 sequence_length=lengths, dtype=tf.float32, scope="b")


def tf2_object_checkpoint():
    """tf.train.Checkpoint (TF2 object-based): names such as 'w/.ATTRIBUTES/VARIABLE_VALUE'
    plus the string tensor '_CHECKPOINTABLE_OBJECT_GRAPH' (skipped by the reader)."""
    name = "tf2_object"
    out_dir = os.path.join(HERE, name)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    rng = np.random.default_rng(7)
    ckpt = tf.train.Checkpoint(w=tf.Variable(rng.standard_normal((3, 2))),
                               n=tf.Variable(np.arange(4, dtype=np.int64)),
                               k=tf.Variable(np.arange(3, dtype=np.int32)),
                               f=tf.Variable(rng.standard_normal(5).astype(np.float32)))
    prefix = ckpt.write(os.path.join(out_dir, "model"))
    reader = tf.train.load_checkpoint(prefix)
    arrays = {"var:" + n: reader.get_tensor(n) for n, _ in tf.train.list_variables(prefix)
              if n != "_CHECKPOINTABLE_OBJECT_GRAPH"}
    np.savez_compressed(os.path.join(out_dir, "expected.npz"), **arrays)
    print(name, sorted(os.listdir(out_dir)), sorted(arrays))


if __name__ == "__main__":
    tf2_object_checkpoint()
    save("basic_lstm", basic_lstm, B=2, T=5, I=3, dtype=np.float32)
    save("multi_gru_lstm", multi_gru_lstm, B=3, T=4, I=3, dtype=np.float32)
    save("bidir_gru_f64", bidir_gru_f64, B=2, T=4, I=2, dtype=np.float64)
    save("sharded_rnn", sharded_rnn, B=2, T=3, I=2, dtype=np.float32, shards=2)
