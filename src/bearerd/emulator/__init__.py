"""A local stand-in for Microsoft Entra ID and Entra application proxy (demo and tests)."""

from bearerd.emulator.appproxy import AppProxyEmulator, SeenRequest
from bearerd.emulator.entra import EntraEmulator, Fault, FaultPlan, TokenCall
from bearerd.emulator.stack import EmulatorStack

__all__ = ["AppProxyEmulator", "EmulatorStack", "EntraEmulator", "Fault", "FaultPlan", "SeenRequest", "TokenCall"]
