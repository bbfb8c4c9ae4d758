"""sharechain.web"""
