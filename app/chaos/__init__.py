"""`strife chaos`: a Jepsen-style fault campaign on a throwaway stack."""
