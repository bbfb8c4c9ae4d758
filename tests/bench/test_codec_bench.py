"""The codec benchmark runs on its three state values and reports every figure."""

from __future__ import annotations

from sharechain import codec
from sharechain.bench import codec as codec_bench


def test_small_run_reports_every_figure() -> None:
    figures = codec_bench.run(rounds=1, n=50)
    assert figures["codec_c_writer_built"] is codec.ACCELERATED
    for name, value in codec_bench.state_values().items():
        assert figures[f"codec_{name}_bytes"] == len(codec.encode(value)) > 100
        assert figures[f"codec_{name}_python_us"] > 0
        if codec.ACCELERATED:
            assert figures[f"codec_{name}_c_us"] > 0
            assert figures[f"codec_{name}_python_over_c"] > 0
    assert codec._plain is (codec._PLAIN_C or codec._plain_python)  # restored after timing
