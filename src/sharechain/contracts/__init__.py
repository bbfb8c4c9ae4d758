"""sharechain.contracts"""
