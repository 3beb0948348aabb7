from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PaymentStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PAYMENT_STATUS_UNSPECIFIED: _ClassVar[PaymentStatus]
    SUCCEEDED: _ClassVar[PaymentStatus]
    DECLINED: _ClassVar[PaymentStatus]
    PENDING: _ClassVar[PaymentStatus]

class Decision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECISION_UNSPECIFIED: _ClassVar[Decision]
    COMMIT: _ClassVar[Decision]
    ABORT: _ClassVar[Decision]

class Vote(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VOTE_UNSPECIFIED: _ClassVar[Vote]
    YES: _ClassVar[Vote]
    NO: _ClassVar[Vote]

class Refusal(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REFUSAL_UNSPECIFIED: _ClassVar[Refusal]
    INSUFFICIENT_FUNDS: _ClassVar[Refusal]
    UNKNOWN_ACCOUNT: _ClassVar[Refusal]
    ALREADY_ABORTED: _ClassVar[Refusal]

class TxnState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TXN_STATE_UNSPECIFIED: _ClassVar[TxnState]
    PREPARED: _ClassVar[TxnState]
    COMMITTED: _ClassVar[TxnState]
    ABORTED: _ClassVar[TxnState]
PAYMENT_STATUS_UNSPECIFIED: PaymentStatus
SUCCEEDED: PaymentStatus
DECLINED: PaymentStatus
PENDING: PaymentStatus
DECISION_UNSPECIFIED: Decision
COMMIT: Decision
ABORT: Decision
VOTE_UNSPECIFIED: Vote
YES: Vote
NO: Vote
REFUSAL_UNSPECIFIED: Refusal
INSUFFICIENT_FUNDS: Refusal
UNKNOWN_ACCOUNT: Refusal
ALREADY_ABORTED: Refusal
TXN_STATE_UNSPECIFIED: TxnState
PREPARED: TxnState
COMMITTED: TxnState
ABORTED: TxnState
ROLES_FIELD_NUMBER: _ClassVar[int]
roles: _descriptor.FieldDescriptor
ANONYMOUS_FIELD_NUMBER: _ClassVar[int]
anonymous: _descriptor.FieldDescriptor

class Errors(_message.Message):
    __slots__ = ()
    class Reason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ERROR_REASON_UNSPECIFIED: _ClassVar[Errors.Reason]
        INVALID_FIELD: _ClassVar[Errors.Reason]
        TOKEN_MISSING: _ClassVar[Errors.Reason]
        TOKEN_INVALID: _ClassVar[Errors.Reason]
        WRONG_CREDENTIALS: _ClassVar[Errors.Reason]
        NOT_YOUR_ACCOUNT: _ClassVar[Errors.Reason]
        ROLE_NOT_ALLOWED: _ClassVar[Errors.Reason]
        UNKNOWN_BANK: _ClassVar[Errors.Reason]
        UNKNOWN_ACCOUNT: _ClassVar[Errors.Reason]
        UNKNOWN_PAYMENT: _ClassVar[Errors.Reason]
        USERNAME_TAKEN: _ClassVar[Errors.Reason]
        ACCOUNT_ALREADY_LINKED: _ClassVar[Errors.Reason]
        IDEMPOTENCY_KEY_REUSED: _ClassVar[Errors.Reason]
        DEMO_DISABLED: _ClassVar[Errors.Reason]
        IDEMPOTENCY_KEY_IN_FLIGHT: _ClassVar[Errors.Reason]
        BANK_UNAVAILABLE: _ClassVar[Errors.Reason]
        BREAKER_OPEN: _ClassVar[Errors.Reason]
        STORE_UNAVAILABLE: _ClassVar[Errors.Reason]
        DEADLINE_TOO_SHORT: _ClassVar[Errors.Reason]
        BANK_TIMEOUT: _ClassVar[Errors.Reason]
        LOGIN_LOCKED: _ClassVar[Errors.Reason]
        TOO_MANY_STREAMS: _ClassVar[Errors.Reason]
        INSUFFICIENT_FUNDS: _ClassVar[Errors.Reason]
        INTERNAL_ERROR: _ClassVar[Errors.Reason]
    ERROR_REASON_UNSPECIFIED: Errors.Reason
    INVALID_FIELD: Errors.Reason
    TOKEN_MISSING: Errors.Reason
    TOKEN_INVALID: Errors.Reason
    WRONG_CREDENTIALS: Errors.Reason
    NOT_YOUR_ACCOUNT: Errors.Reason
    ROLE_NOT_ALLOWED: Errors.Reason
    UNKNOWN_BANK: Errors.Reason
    UNKNOWN_ACCOUNT: Errors.Reason
    UNKNOWN_PAYMENT: Errors.Reason
    USERNAME_TAKEN: Errors.Reason
    ACCOUNT_ALREADY_LINKED: Errors.Reason
    IDEMPOTENCY_KEY_REUSED: Errors.Reason
    DEMO_DISABLED: Errors.Reason
    IDEMPOTENCY_KEY_IN_FLIGHT: Errors.Reason
    BANK_UNAVAILABLE: Errors.Reason
    BREAKER_OPEN: Errors.Reason
    STORE_UNAVAILABLE: Errors.Reason
    DEADLINE_TOO_SHORT: Errors.Reason
    BANK_TIMEOUT: Errors.Reason
    LOGIN_LOCKED: Errors.Reason
    TOO_MANY_STREAMS: Errors.Reason
    INSUFFICIENT_FUNDS: Errors.Reason
    INTERNAL_ERROR: Errors.Reason
    def __init__(self) -> None: ...

class AccountRef(_message.Message):
    __slots__ = ("bank", "account_id")
    BANK_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    bank: str
    account_id: str
    def __init__(self, bank: _Optional[str] = ..., account_id: _Optional[str] = ...) -> None: ...

class RegisterRequest(_message.Message):
    __slots__ = ("username", "password", "account")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    username: str
    password: str
    account: AccountRef
    def __init__(self, username: _Optional[str] = ..., password: _Optional[str] = ..., account: _Optional[_Union[AccountRef, _Mapping]] = ...) -> None: ...

class RegisterResponse(_message.Message):
    __slots__ = ("username",)
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    username: str
    def __init__(self, username: _Optional[str] = ...) -> None: ...

class LoginRequest(_message.Message):
    __slots__ = ("username", "password")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    username: str
    password: str
    def __init__(self, username: _Optional[str] = ..., password: _Optional[str] = ...) -> None: ...

class LoginResponse(_message.Message):
    __slots__ = ("token", "expires_at_ms", "username")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    token: str
    expires_at_ms: int
    username: str
    def __init__(self, token: _Optional[str] = ..., expires_at_ms: _Optional[int] = ..., username: _Optional[str] = ...) -> None: ...

class LogoutRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LogoutResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LinkAccountRequest(_message.Message):
    __slots__ = ("account",)
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    account: AccountRef
    def __init__(self, account: _Optional[_Union[AccountRef, _Mapping]] = ...) -> None: ...

class LinkAccountResponse(_message.Message):
    __slots__ = ("accounts",)
    ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    accounts: _containers.RepeatedCompositeFieldContainer[AccountRef]
    def __init__(self, accounts: _Optional[_Iterable[_Union[AccountRef, _Mapping]]] = ...) -> None: ...

class BalanceRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AccountBalance(_message.Message):
    __slots__ = ("account", "balance_cents", "available_cents", "reachable")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    BALANCE_CENTS_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_CENTS_FIELD_NUMBER: _ClassVar[int]
    REACHABLE_FIELD_NUMBER: _ClassVar[int]
    account: AccountRef
    balance_cents: int
    available_cents: int
    reachable: bool
    def __init__(self, account: _Optional[_Union[AccountRef, _Mapping]] = ..., balance_cents: _Optional[int] = ..., available_cents: _Optional[int] = ..., reachable: _Optional[bool] = ...) -> None: ...

class BalanceResponse(_message.Message):
    __slots__ = ("accounts", "total_cents")
    ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_CENTS_FIELD_NUMBER: _ClassVar[int]
    accounts: _containers.RepeatedCompositeFieldContainer[AccountBalance]
    total_cents: int
    def __init__(self, accounts: _Optional[_Iterable[_Union[AccountBalance, _Mapping]]] = ..., total_cents: _Optional[int] = ...) -> None: ...

class PayRequest(_message.Message):
    __slots__ = ("idempotency_key", "to", "amount_cents")
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    FROM_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_CENTS_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    to: AccountRef
    amount_cents: int
    def __init__(self, idempotency_key: _Optional[str] = ..., to: _Optional[_Union[AccountRef, _Mapping]] = ..., amount_cents: _Optional[int] = ..., **kwargs) -> None: ...

class Payment(_message.Message):
    __slots__ = ("payment_id", "idempotency_key", "to", "amount_cents", "status", "reason", "created_at_ms", "username", "decline_reason")
    PAYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    FROM_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_CENTS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    DECLINE_REASON_FIELD_NUMBER: _ClassVar[int]
    payment_id: str
    idempotency_key: str
    to: AccountRef
    amount_cents: int
    status: PaymentStatus
    reason: str
    created_at_ms: int
    username: str
    decline_reason: Errors.Reason
    def __init__(self, payment_id: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., to: _Optional[_Union[AccountRef, _Mapping]] = ..., amount_cents: _Optional[int] = ..., status: _Optional[_Union[PaymentStatus, str]] = ..., reason: _Optional[str] = ..., created_at_ms: _Optional[int] = ..., username: _Optional[str] = ..., decline_reason: _Optional[_Union[Errors.Reason, str]] = ..., **kwargs) -> None: ...

class GetPaymentRequest(_message.Message):
    __slots__ = ("payment_id",)
    PAYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    payment_id: str
    def __init__(self, payment_id: _Optional[str] = ...) -> None: ...

class ListPaymentsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListPaymentsResponse(_message.Message):
    __slots__ = ("payments", "next_page_token")
    PAYMENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    payments: _containers.RepeatedCompositeFieldContainer[Payment]
    next_page_token: str
    def __init__(self, payments: _Optional[_Iterable[_Union[Payment, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WatchPaymentsRequest(_message.Message):
    __slots__ = ("cursor",)
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    cursor: str
    def __init__(self, cursor: _Optional[str] = ...) -> None: ...

class PaymentEvent(_message.Message):
    __slots__ = ("cursor", "payment_id", "kind", "reason", "at_ms", "payment")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[PaymentEvent.Kind]
        ACCEPTED: _ClassVar[PaymentEvent.Kind]
        COMMITTED: _ClassVar[PaymentEvent.Kind]
        DECLINED: _ClassVar[PaymentEvent.Kind]
        ABORTED: _ClassVar[PaymentEvent.Kind]
    KIND_UNSPECIFIED: PaymentEvent.Kind
    ACCEPTED: PaymentEvent.Kind
    COMMITTED: PaymentEvent.Kind
    DECLINED: PaymentEvent.Kind
    ABORTED: PaymentEvent.Kind
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    AT_MS_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_FIELD_NUMBER: _ClassVar[int]
    cursor: str
    payment_id: str
    kind: PaymentEvent.Kind
    reason: str
    at_ms: int
    payment: Payment
    def __init__(self, cursor: _Optional[str] = ..., payment_id: _Optional[str] = ..., kind: _Optional[_Union[PaymentEvent.Kind, str]] = ..., reason: _Optional[str] = ..., at_ms: _Optional[int] = ..., payment: _Optional[_Union[Payment, _Mapping]] = ...) -> None: ...

class ListGatewaysRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GatewayReplica(_message.Message):
    __slots__ = ("replica_id", "address", "region", "started_at_ms", "heartbeat_at_ms", "in_flight", "committing")
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_AT_MS_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    COMMITTING_FIELD_NUMBER: _ClassVar[int]
    replica_id: str
    address: str
    region: str
    started_at_ms: int
    heartbeat_at_ms: int
    in_flight: int
    committing: int
    def __init__(self, replica_id: _Optional[str] = ..., address: _Optional[str] = ..., region: _Optional[str] = ..., started_at_ms: _Optional[int] = ..., heartbeat_at_ms: _Optional[int] = ..., in_flight: _Optional[int] = ..., committing: _Optional[int] = ...) -> None: ...

class ListGatewaysResponse(_message.Message):
    __slots__ = ("gateways", "answered_by")
    GATEWAYS_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_BY_FIELD_NUMBER: _ClassVar[int]
    gateways: _containers.RepeatedCompositeFieldContainer[GatewayReplica]
    answered_by: str
    def __init__(self, gateways: _Optional[_Iterable[_Union[GatewayReplica, _Mapping]]] = ..., answered_by: _Optional[str] = ...) -> None: ...

class SlowMotionRequest(_message.Message):
    __slots__ = ("pause_ms",)
    PAUSE_MS_FIELD_NUMBER: _ClassVar[int]
    pause_ms: int
    def __init__(self, pause_ms: _Optional[int] = ...) -> None: ...

class SlowMotionResponse(_message.Message):
    __slots__ = ("pause_ms",)
    PAUSE_MS_FIELD_NUMBER: _ClassVar[int]
    pause_ms: int
    def __init__(self, pause_ms: _Optional[int] = ...) -> None: ...

class ResolveRequest(_message.Message):
    __slots__ = ("txn_id",)
    TXN_ID_FIELD_NUMBER: _ClassVar[int]
    txn_id: str
    def __init__(self, txn_id: _Optional[str] = ...) -> None: ...

class ResolveResponse(_message.Message):
    __slots__ = ("decision",)
    DECISION_FIELD_NUMBER: _ClassVar[int]
    decision: Decision
    def __init__(self, decision: _Optional[_Union[Decision, str]] = ...) -> None: ...

class Leg(_message.Message):
    __slots__ = ("account_id", "delta_cents")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    DELTA_CENTS_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    delta_cents: int
    def __init__(self, account_id: _Optional[str] = ..., delta_cents: _Optional[int] = ...) -> None: ...

class PrepareRequest(_message.Message):
    __slots__ = ("txn_id", "legs")
    TXN_ID_FIELD_NUMBER: _ClassVar[int]
    LEGS_FIELD_NUMBER: _ClassVar[int]
    txn_id: str
    legs: _containers.RepeatedCompositeFieldContainer[Leg]
    def __init__(self, txn_id: _Optional[str] = ..., legs: _Optional[_Iterable[_Union[Leg, _Mapping]]] = ...) -> None: ...

class PrepareResponse(_message.Message):
    __slots__ = ("vote", "reason", "refusal")
    VOTE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REFUSAL_FIELD_NUMBER: _ClassVar[int]
    vote: Vote
    reason: str
    refusal: Refusal
    def __init__(self, vote: _Optional[_Union[Vote, str]] = ..., reason: _Optional[str] = ..., refusal: _Optional[_Union[Refusal, str]] = ...) -> None: ...

class PrepareBatchRequest(_message.Message):
    __slots__ = ("prepares", "decisions")
    PREPARES_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    prepares: _containers.RepeatedCompositeFieldContainer[PrepareRequest]
    decisions: _containers.RepeatedCompositeFieldContainer[DecisionItem]
    def __init__(self, prepares: _Optional[_Iterable[_Union[PrepareRequest, _Mapping]]] = ..., decisions: _Optional[_Iterable[_Union[DecisionItem, _Mapping]]] = ...) -> None: ...

class PrepareBatchResponse(_message.Message):
    __slots__ = ("votes", "results")
    VOTES_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    votes: _containers.RepeatedCompositeFieldContainer[PrepareResponse]
    results: _containers.RepeatedCompositeFieldContainer[DecisionResult]
    def __init__(self, votes: _Optional[_Iterable[_Union[PrepareResponse, _Mapping]]] = ..., results: _Optional[_Iterable[_Union[DecisionResult, _Mapping]]] = ...) -> None: ...

class DecisionItem(_message.Message):
    __slots__ = ("txn_id", "decision")
    TXN_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    txn_id: str
    decision: Decision
    def __init__(self, txn_id: _Optional[str] = ..., decision: _Optional[_Union[Decision, str]] = ...) -> None: ...

class DecideBatchRequest(_message.Message):
    __slots__ = ("decisions",)
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    decisions: _containers.RepeatedCompositeFieldContainer[DecisionItem]
    def __init__(self, decisions: _Optional[_Iterable[_Union[DecisionItem, _Mapping]]] = ...) -> None: ...

class DecisionResult(_message.Message):
    __slots__ = ("ok", "error")
    OK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    error: str
    def __init__(self, ok: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...

class DecideBatchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[DecisionResult]
    def __init__(self, results: _Optional[_Iterable[_Union[DecisionResult, _Mapping]]] = ...) -> None: ...

class BankBatch(_message.Message):
    __slots__ = ("id", "timeout_ms", "prepare", "decide")
    ID_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    PREPARE_FIELD_NUMBER: _ClassVar[int]
    DECIDE_FIELD_NUMBER: _ClassVar[int]
    id: int
    timeout_ms: int
    prepare: PrepareBatchRequest
    decide: DecideBatchRequest
    def __init__(self, id: _Optional[int] = ..., timeout_ms: _Optional[int] = ..., prepare: _Optional[_Union[PrepareBatchRequest, _Mapping]] = ..., decide: _Optional[_Union[DecideBatchRequest, _Mapping]] = ...) -> None: ...

class BankBatchAnswer(_message.Message):
    __slots__ = ("id", "prepare", "decide", "refused")
    ID_FIELD_NUMBER: _ClassVar[int]
    PREPARE_FIELD_NUMBER: _ClassVar[int]
    DECIDE_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    id: int
    prepare: PrepareBatchResponse
    decide: DecideBatchResponse
    refused: BatchRefused
    def __init__(self, id: _Optional[int] = ..., prepare: _Optional[_Union[PrepareBatchResponse, _Mapping]] = ..., decide: _Optional[_Union[DecideBatchResponse, _Mapping]] = ..., refused: _Optional[_Union[BatchRefused, _Mapping]] = ...) -> None: ...

class BatchRefused(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class BankBalanceRequest(_message.Message):
    __slots__ = ("account_id",)
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    def __init__(self, account_id: _Optional[str] = ...) -> None: ...

class BankBalanceResponse(_message.Message):
    __slots__ = ("account_id", "balance_cents", "available_cents", "owner")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    BALANCE_CENTS_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_CENTS_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    balance_cents: int
    available_cents: int
    owner: str
    def __init__(self, account_id: _Optional[str] = ..., balance_cents: _Optional[int] = ..., available_cents: _Optional[int] = ..., owner: _Optional[str] = ...) -> None: ...

class ValidateAccountRequest(_message.Message):
    __slots__ = ("account_id",)
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    def __init__(self, account_id: _Optional[str] = ...) -> None: ...

class ValidateAccountResponse(_message.Message):
    __slots__ = ("exists", "owner")
    EXISTS_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    exists: bool
    owner: str
    def __init__(self, exists: _Optional[bool] = ..., owner: _Optional[str] = ...) -> None: ...

class ListAccountsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListAccountsResponse(_message.Message):
    __slots__ = ("accounts", "total_cents", "held_cents", "bank", "seeded_total_cents")
    ACCOUNTS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_CENTS_FIELD_NUMBER: _ClassVar[int]
    HELD_CENTS_FIELD_NUMBER: _ClassVar[int]
    BANK_FIELD_NUMBER: _ClassVar[int]
    SEEDED_TOTAL_CENTS_FIELD_NUMBER: _ClassVar[int]
    accounts: _containers.RepeatedCompositeFieldContainer[BankBalanceResponse]
    total_cents: int
    held_cents: int
    bank: str
    seeded_total_cents: int
    def __init__(self, accounts: _Optional[_Iterable[_Union[BankBalanceResponse, _Mapping]]] = ..., total_cents: _Optional[int] = ..., held_cents: _Optional[int] = ..., bank: _Optional[str] = ..., seeded_total_cents: _Optional[int] = ...) -> None: ...

class Transaction(_message.Message):
    __slots__ = ("txn_id", "state", "legs", "reason")
    TXN_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LEGS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    txn_id: str
    state: TxnState
    legs: _containers.RepeatedCompositeFieldContainer[Leg]
    reason: str
    def __init__(self, txn_id: _Optional[str] = ..., state: _Optional[_Union[TxnState, str]] = ..., legs: _Optional[_Iterable[_Union[Leg, _Mapping]]] = ..., reason: _Optional[str] = ...) -> None: ...

class ListTransactionsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListTransactionsResponse(_message.Message):
    __slots__ = ("transactions", "next_page_token")
    TRANSACTIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    transactions: _containers.RepeatedCompositeFieldContainer[Transaction]
    next_page_token: str
    def __init__(self, transactions: _Optional[_Iterable[_Union[Transaction, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
