"""A holder's record shows its fields joined with its implicit customer's; a later write of
the holder's own moves the join on (`JoinedView.advance`) instead of joining again. That
is right only because the fold's primitives commute: these tests check the record rendered
from the moved-on join, and its changed paths, against joining the new state again, for
random events and batches (pure, no Redis)."""

import random

import orjson
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from contracts.events import AnyInputEvent
from contracts.identity import implicit_customer_id
from tests.support.generate import Generator
from tests.support.pipeline_harness import topic_of
from worker.domain.fields import visible_fields
from worker.domain.fold import CustomerState, Folded, FoldLimits, fold
from worker.domain.merge import JoinedView, merged
from worker.domain.record import RenderedRecord, changed_paths
from worker.domain.steps import Step, step_of
from worker.intake import Intake
from worker.limits import Limits
from worker.rejection import Rejection
from worker.settings import Topics

_INTAKE = Intake(Topics().inputs, Limits())
_LIMITS = FoldLimits()


def _steps(events: list[dict[str, object]]) -> list[Step]:
    steps = []
    for event in events:
        decoded: AnyInputEvent | Rejection = _INTAKE.decode(topic_of(event), orjson.dumps(event))
        assert not isinstance(decoded, Rejection), decoded
        steps.append(step_of(decoded))
    return steps


def _fold(state: CustomerState, steps: list[Step]) -> Folded:
    """Fold and keep the result, as the pipeline does once the commit is written."""
    folded = fold(state, steps, _LIMITS)
    if folded.commit is not None:
        state.commit(folded, len(folded.commit.log), 0, -1, -1)
    return folded


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), cuts=st.lists(st.integers(1, 8), min_size=1, max_size=6))
def test_a_join_moved_on_by_the_holders_events_is_the_join_of_its_new_state(
    seed: int, cuts: list[int]
) -> None:
    rng = random.Random(seed)
    generator = Generator(rng, ["c1", "c2"], erases=False)
    other = CustomerState(implicit_customer_id("crm-1"), {})
    _fold(other, _steps(generator.events(12)))
    own = CustomerState("c1", {})
    _fold(own, _steps(generator.events(6)))
    view = JoinedView.of(own.fields, other.fields)
    assume(view is not None)
    assert view is not None
    shown = RenderedRecord("c1", visible_fields(view.fields))
    for size in cuts:
        steps = _steps(generator.events(size))
        before = own.write_token
        folded = _fold(own, steps)
        applied = [
            (step.micros, step.marker, step.ops)
            for step, letter in zip(steps, folded.letters, strict=True)
            if letter in "AU"
        ]
        changes = view.advance((before, own.write_token), other.fields, applied)
        assert changes is not None
        earlier = orjson.loads(shown.record_json() or b"null")
        record, paths = shown.apply(changes)
        again = RenderedRecord("c1", visible_fields(merged(own.fields, other.fields)))
        assert record is not None
        assert orjson.loads(record) == orjson.loads(again.record_json() or b"null")
        assert paths == changed_paths(earlier, orjson.loads(record))


def test_a_join_of_other_states_is_not_moved_on() -> None:
    generator = Generator(random.Random(7), ["c1", "c2"], erases=False)
    other = CustomerState(implicit_customer_id("crm-1"), {})
    _fold(other, _steps(generator.events(5)))
    own = CustomerState("c1", {})
    _fold(own, _steps(generator.events(5)))
    view = JoinedView.of(own.fields, other.fields)
    assert view is not None
    token = own.write_token
    _fold(other, _steps(generator.events(3)))  # the implicit customer moved on
    assert view.advance((token, token), other.fields, []) is None
    view = JoinedView.of(own.fields, other.fields)
    assert view is not None
    assert view.advance(("another", token), other.fields, []) is None  # so did the holder
    assert view.advance((token, "next"), other.fields, []) == {}
