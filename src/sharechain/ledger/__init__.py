"""sharechain.ledger"""
