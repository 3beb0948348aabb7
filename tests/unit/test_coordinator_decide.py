"""The coordinator's decision functions: what the votes decide, and what a client
is told of a payment that did not happen. Reason codes, never words, decide."""

from __future__ import annotations

import grpc

from backend.api import strife_pb2 as pb
from backend.common.states import Decision, Outcome, Refusal
from backend.gateway.coordinator import Answer, BankVote, decide, not_made

YES_A = BankVote("BankA", Answer.VOTED, yes=True)
YES_B = BankVote("BankB", Answer.VOTED, yes=True)


def no(bank: str, refusal: int, reason: str = "whatever the bank says") -> BankVote:
    return BankVote(bank, Answer.VOTED, yes=False, refusal=refusal, reason=reason)


def silent(bank: str, answer: Answer) -> BankVote:
    return BankVote(bank, answer, reason=f"{bank} {answer}")


def test_every_yes_commits():
    assert decide([YES_A, YES_B]) == (Decision.COMMIT, Outcome.SUCCEEDED, "")
    assert decide([YES_A]) == (Decision.COMMIT, Outcome.SUCCEEDED, "")  # both legs at one bank


def test_insufficient_funds_declines_whatever_the_words():
    decision, outcome, _ = decide([no("BankA", pb.INSUFFICIENT_FUNDS, "solde insuffisant"), YES_B])
    assert (decision, outcome) == (Decision.ABORT, Outcome.DECLINED)
    # the words alone decide nothing: a NO that says "insufficient funds" without the code is retryable
    assert decide([no("BankA", pb.ALREADY_ABORTED, "insufficient funds"), YES_B])[1] == Outcome.RETRYABLE


def test_an_unknown_account_wins_over_insufficient_funds():
    """Paying more than you have to an account that does not exist: the account is the mistake."""
    votes = [
        no("BankA", pb.INSUFFICIENT_FUNDS, "insufficient funds"),
        no("BankB", pb.UNKNOWN_ACCOUNT, "unknown account B-9"),
    ]
    decision, outcome, reason = decide(votes)
    assert (decision, outcome, reason) == (Decision.ABORT, Outcome.RETRYABLE, "unknown account B-9")
    assert not_made(votes, reason).code is grpc.StatusCode.NOT_FOUND


def test_a_decline_wins_over_an_outage():
    assert decide([no("BankA", pb.INSUFFICIENT_FUNDS), silent("BankB", Answer.TIMEOUT)])[1] == Outcome.DECLINED


def test_missing_votes_abort_retryably_and_name_the_banks():
    decision, outcome, reason = decide([silent("BankA", Answer.UNAVAILABLE), silent("BankB", Answer.TIMEOUT)])
    assert (decision, outcome) == (Decision.ABORT, Outcome.RETRYABLE)
    assert "BankA" in reason and "BankB" in reason
    # a bank's own refusal is the reason when there is one
    assert decide([no("BankA", pb.UNKNOWN_ACCOUNT, "unknown account X"), silent("BankB", Answer.ERROR)])[2] == (
        "unknown account X"
    )


def test_what_the_client_is_told():
    assert not_made([no("BankB", pb.UNKNOWN_ACCOUNT), YES_A], "r").code is grpc.StatusCode.NOT_FOUND
    assert not_made([silent("BankB", Answer.TIMEOUT), YES_A], "r").code is grpc.StatusCode.DEADLINE_EXCEEDED
    for votes in (
        [silent("BankA", Answer.UNAVAILABLE), silent("BankB", Answer.TIMEOUT)],
        [silent("BankA", Answer.ERROR)],
        [no("BankA", pb.ALREADY_ABORTED), YES_B],
    ):
        refused = not_made(votes, "BankA offline")
        assert refused.code is grpc.StatusCode.UNAVAILABLE
        assert "retry with the same idempotency key" in str(refused)


def test_the_refusal_names_are_the_protos():
    assert {r.value for r in Refusal} == set(pb.Refusal.keys()) - {"REFUSAL_UNSPECIFIED"}
