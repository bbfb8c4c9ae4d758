"""The ledger: transactions, blocks, Merkle proofs, stores and validation.

The ledger knows nothing of data sharing; it runs whatever `ContractRegistry`
it is given.
"""

from sharechain.ledger.blocks import Block, BlockHeader, TxResult, decode_block, encode_block
from sharechain.ledger.chain import Execution, Ledger
from sharechain.ledger.contract import BlockContext, ContractRegistry, Reject, State
from sharechain.ledger.genesis import Genesis, genesis_block
from sharechain.ledger.identities import Organisation
from sharechain.ledger.proofs import TxProof, prove_tx, verify_tx_proof
from sharechain.ledger.store import Store
from sharechain.ledger.transactions import SignedTransaction, Transaction, sign_transaction
from sharechain.ledger.verify import VerifyReport, verify_chain, verify_ledger

__all__ = [
    "Block",
    "BlockContext",
    "BlockHeader",
    "ContractRegistry",
    "Execution",
    "Genesis",
    "Ledger",
    "Organisation",
    "Reject",
    "SignedTransaction",
    "State",
    "Store",
    "Transaction",
    "TxProof",
    "TxResult",
    "VerifyReport",
    "decode_block",
    "encode_block",
    "genesis_block",
    "prove_tx",
    "sign_transaction",
    "verify_chain",
    "verify_ledger",
    "verify_tx_proof",
]
