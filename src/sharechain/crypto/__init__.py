"""sharechain.crypto"""
