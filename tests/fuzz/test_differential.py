"""The short seeded differential campaign of issue 12 (``make soak`` runs the long one).

Random well-formed programs (``tc.fuzz.generate``) with random mapping options run on
the interpreter, the CPU target, PoCL and NVRTC (``tc.fuzz.run``, in a worker process,
so a crash is a failure, not the end of the test run); every finding fails, except
those already stored in ``tests/fuzz/findings/`` (replayed, as expected failures, by
``test_findings.py``). Derandomized: the same programs on every run.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings

import tc
from tc.fuzz.campaign import Campaign, known_elsewhere, stored_keys
from tc.fuzz.generate import Case, cases, key_value
from tc.fuzz.run import make_inputs, mapping_options
from tc.options import MappingOptions

FINDINGS = Path(__file__).parent / "findings"
#: Differential examples of the default run (a few seconds each at most; under 60 s in
#: all on this machine), 20 times more with ``--fuzz-long``.
EXAMPLES = 20


@pytest.fixture(scope="module")
def campaign():
    c = Campaign(out_dir=None, timeout=120.0)
    yield c
    c.worker.stop()


def test_generated_programs_pass_the_front_end_and_run() -> None:
    """The generator's programs are valid (no TcError from the front end), and their
    inputs have the declared shapes; range errors come only from the rare cases meant
    to raise them."""

    @settings(max_examples=60, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=cases())
    def check(case: Case) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn = tc.define(case.text, backend="reference")[case.entry]
        inputs = make_inputs(case)
        sizes = dict(case.sizes)
        for spec, t in zip(case.inputs, inputs, strict=True):
            assert list(t.shape) == [key_value(d, sizes) for d in spec.dims]
        try:
            fn(*inputs)
        except tc.TcRangeError:
            assert case.expect_range_error, case.text

    check()


def test_case_and_options_round_trip() -> None:
    @settings(max_examples=20, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=cases(), options=mapping_options())
    def check(case: Case, options: MappingOptions) -> None:
        assert Case.from_json(json.loads(json.dumps(case.to_json()))) == case
        assert MappingOptions.deserialize(options.serialize()) == options

    check()


def test_seeded_differential_campaign(campaign: Campaign, fuzz_examples) -> None:
    known = stored_keys(FINDINGS)  # finding them again is not news

    @settings(max_examples=fuzz_examples(EXAMPLES), deadline=None, derandomize=True,
              database=None, suppress_health_check=list(HealthCheck),
              phases=[Phase.explicit, Phase.generate])  # shrinking is the soak's job
    @given(case=cases(), options=mapping_options())
    def check(case: Case, options: MappingOptions) -> None:
        new = [f for f in campaign.check(case, options)
               if f.key() not in known and not known_elsewhere(f)]
        assert not new, "\n".join(
            f"{f.kind} on {f.target}: {f.detail}\n{case.text}\nsizes {dict(case.sizes)}\n"
            f"options {options.serialize()}\ncase {json.dumps(case.to_json())}" for f in new)

    check()
    assert campaign.stats.runs["reference", "ok"] > 0
