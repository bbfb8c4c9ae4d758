"""sharechain.storage"""
