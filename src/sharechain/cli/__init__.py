"""sharechain.cli"""
