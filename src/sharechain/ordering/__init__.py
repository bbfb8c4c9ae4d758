"""sharechain.ordering"""
