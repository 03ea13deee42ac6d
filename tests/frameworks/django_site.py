"""A one-file Django project served by its ASGI handler, with /c2c next to it through PathDispatcher.

Django reads the scheme, host, root path and client from the ASGI scope, so after ForwardedHeadersMiddleware
it needs no SECURE_PROXY_SSL_HEADER nor USE_X_FORWARDED_HOST.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import django
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path

from tests.frameworks.checks import page_html

ALLOWED_HOSTS = ["127.0.0.1", "localhost", "service.example.com"]

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="django-tests-only-not-a-secret",
        ROOT_URLCONF=__name__,
        ALLOWED_HOSTS=ALLOWED_HOSTS,
        INSTALLED_APPS=[],
        DATABASES={},
        # Django's own clickjacking header: ours must replace it, not duplicate it (header names differ in case).
        MIDDLEWARE=["django.middleware.clickjacking.XFrameOptionsMiddleware"],
        X_FRAME_OPTIONS="SAMEORIGIN",
        USE_TZ=True,
        LOGGING_CONFIG=None,
    )
    django.setup(set_prefix=False)


def _state(request: HttpRequest) -> dict[str, Any]:
    # ASGIRequest keeps the ASGI scope: request.state of Starlette is scope["state"].
    return request.scope.get("state", {})  # type: ignore[attr-defined,no-any-return]


def hello(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        {
            "message": "hello from django",
            "absolute_uri": request.build_absolute_uri(),
            "is_secure": request.is_secure(),
            "host": request.get_host(),
            "script_name": request.META["SCRIPT_NAME"],
            "path_info": request.path_info,
            "remote_addr": request.META.get("REMOTE_ADDR"),
            "has_nonce": "nonce" in _state(request),
        }
    )


def page(request: HttpRequest) -> HttpResponse:
    return HttpResponse(page_html(_state(request)["nonce"]), content_type="text/html; charset=utf-8")


def echo(request: HttpRequest) -> JsonResponse:
    """The seed's echo view: the body is read by the view itself, after our middlewares."""
    if request.method != "POST":
        return JsonResponse({"error": "POST only"}, status=405)
    body = request.body
    payload: dict[str, Any] = {}
    if request.content_type == "application/json":
        try:
            payload = json.loads(body.decode("utf-8") or "{}")
        except json.JSONDecodeError as error:
            return JsonResponse({"error": str(error)}, status=400)
    return JsonResponse(
        {
            "message": payload.get("message"),
            "count": payload.get("count", 1),
            "sha256": hashlib.sha256(body).hexdigest(),
            "length": len(body),
        }
    )


urlpatterns = [path("hello", hello), path("page", page), path("echo", echo)]


def create_asgi_app() -> Any:
    """Django wrapped by our middlewares, with /c2c dispatched to c2casgiutils.app."""
    from django.core.asgi import get_asgi_application

    import c2casgiutils
    from c2casgiutils import headers
    from tests.frameworks.checks import PAGE_HEADERS_CONFIG
    from tests.frameworks.dispatch import PathDispatcher
    from tests.frameworks.lifecycle import c2c_lifespan

    # Django does not speak the ASGI lifespan protocol: the dispatcher runs c2casgiutils' start-up itself.
    application = PathDispatcher(get_asgi_application(), {"/c2c": c2casgiutils.app}, lifespan=c2c_lifespan("django"))
    application = headers.ArmorHeaderMiddleware(application, headers_config=PAGE_HEADERS_CONFIG)
    return headers.ForwardedHeadersMiddleware(
        application, trusted_hosts=["127.0.0.1"], fields="for,proto,host,port,prefix"
    )
