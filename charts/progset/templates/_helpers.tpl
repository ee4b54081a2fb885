{{/*
Names, labels and small pieces shared by the templates.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "progset.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The prefix of every object name: fullnameOverride, else "<release>-<chart>", else just the release
name when it already contains the chart name. Cut to 63 characters (DNS label).
*/}}
{{- define "progset.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
"<fullname>-<suffix>" within 63 characters, for objects whose name must be a DNS label (Services).
Call with (dict "ctx" $ "suffix" "metrics").
*/}}
{{- define "progset.suffixedName" -}}
{{- $prefix := include "progset.fullname" .ctx | trunc (int (sub 62 (len .suffix))) | trimSuffix "-" -}}
{{- printf "%s-%s" $prefix .suffix -}}
{{- end -}}

{{/* "<chart>-<version>" for the helm.sh/chart label. */}}
{{- define "progset.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels that select the operator pod; never change them after a release exists. */}}
{{- define "progset.selectorLabels" -}}
app.kubernetes.io/name: {{ include "progset.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{/* Labels of every object of the release. */}}
{{- define "progset.labels" -}}
helm.sh/chart: {{ include "progset.chart" . }}
{{ include "progset.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: progset
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The operator's ServiceAccount name. */}}
{{- define "progset.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "progset.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The operator image reference: repository@digest, or repository:tag (tag defaults to appVersion). */}}
{{- define "progset.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
The rules the operator needs in every namespace it serves. Each one is used by operator/progset_operator
or by kopf; tests/chart/test_rbac.py fails when a rule is missing or when one is never used.
*/}}
{{- define "progset.namespacedRules" -}}
# ProgramSets: kopf lists and watches them and patches its bookkeeping annotations onto them; the
# reconciler reads the owner of a drifted ConfigMap.
- apiGroups: ["progset.io"]
  resources: ["programsets"]
  verbs: ["get", "list", "watch", "patch"]
# The reconciler writes conditions, observedGeneration and configHash.
- apiGroups: ["progset.io"]
  resources: ["programsets/status"]
  verbs: ["patch"]
# The rendered ConfigMaps carry an ownerReference with blockOwnerDeletion: true; clusters with the
# OwnerReferencesPermissionEnforcement admission plugin require this permission to set it.
- apiGroups: ["progset.io"]
  resources: ["programsets/finalizers"]
  verbs: ["update"]
# Rendered ConfigMaps: created, patched (updates and drift repair), read, watched (drift) and deleted
# (after spec.configMapName changed).
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Kubernetes events on the ProgramSets (kopf's poster).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- include "progset.webhookNamespacedRules" . }}
{{- end -}}

{{/* kopf's cluster scanning: CRDs always, Namespaces only when it serves a list of namespaces. */}}
{{- define "progset.scanningRules" -}}
# kopf watches CustomResourceDefinitions to notice served resources that appear after it started.
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
{{- if .Values.watchNamespaces }}
# kopf lists and watches Namespaces to match the served namespaces against those that exist.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}
{{- end -}}

{{/* The namespaces the PodMonitor scrapes. */}}
{{- define "progset.podMonitorNamespaces" -}}
{{- if .Values.podMonitor.namespaces -}}
{{- toYaml .Values.podMonitor.namespaces -}}
{{- else if .Values.watchNamespaces -}}
{{- toYaml .Values.watchNamespaces -}}
{{- end -}}
{{- end -}}

{{/* --- the sidecar injection webhook (webhook.enabled) --- */}}

{{/* The webhook's Service; the certificate names <service>.<namespace>.svc. */}}
{{- define "progset.webhookService" -}}
{{- include "progset.suffixedName" (dict "ctx" . "suffix" "webhook") -}}
{{- end -}}

{{/* The MutatingWebhookConfiguration: cluster-scoped, so the release namespace is part of its name. */}}
{{- define "progset.webhookConfig" -}}
{{- printf "%s-%s" .Release.Namespace (include "progset.fullname" .) | trunc 253 -}}
{{- end -}}

{{/* The Secret with the webhook's certificate: cert-manager's (tls) or the operator's own CA (ca). */}}
{{- define "progset.webhookSecret" -}}
{{- include "progset.suffixedName" (dict "ctx" . "suffix" (ternary "webhook-tls" "webhook-ca" .Values.webhook.certManager.enabled)) -}}
{{- end -}}

{{/* The injected supervisor image: repository:tag (tag defaults to appVersion). */}}
{{- define "progset.sidecarImage" -}}
{{- printf "%s:%s" .Values.webhook.sidecarImage.repository (default .Chart.AppVersion .Values.webhook.sidecarImage.tag) -}}
{{- end -}}

{{/* What the operator needs for the webhook where it serves ProgramSets: see the pods it warns about. */}}
{{- define "progset.webhookNamespacedRules" -}}
{{- if .Values.webhook.enabled }}
# The webhook: kopf watches pods labelled progset.io/programset to warn about those admitted without
# the sidecar (failurePolicy Ignore, or a namespace not opted in).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
{{- end }}
{{- end -}}
