"""LLM layer: one Proposer protocol, several backends."""
from .base import FeatureStat, ParamRange, Proposal, ProposalContext, ProposalError, Proposer

__all__ = ["FeatureStat", "ParamRange", "Proposal", "ProposalContext", "ProposalError", "Proposer"]
