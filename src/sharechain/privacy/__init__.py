"""sharechain.privacy"""
